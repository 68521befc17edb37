"""mambakit.app: the web UI, a thin client of the public API.

:mod:`mambakit.app.handlers` holds the actions as plain functions (tested without a
browser); :mod:`mambakit.app.ui` builds the Gradio app (``build_app``, ``launch``).
"""
