"""mambakit.bench"""
