"""mambakit.ssm"""
