"""mambakit.eval"""
