"""mambakit.app"""
