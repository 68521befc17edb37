"""mambakit.train"""
