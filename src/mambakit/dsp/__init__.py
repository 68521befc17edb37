"""mambakit.dsp"""
