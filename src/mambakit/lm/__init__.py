"""mambakit.lm"""
