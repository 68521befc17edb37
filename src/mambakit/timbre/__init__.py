"""mambakit.timbre"""
