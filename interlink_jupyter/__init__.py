"""Jupyter server extension, JupyterLab sidebar and JupyterHub helpers for interLink."""
