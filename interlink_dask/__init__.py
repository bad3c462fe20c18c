"""Dask clusters whose workers run as pods on interLink virtual nodes."""
