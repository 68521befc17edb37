"""mambakit.drums"""
