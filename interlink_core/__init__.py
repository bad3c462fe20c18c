"""interLink core: wire models, API server, API client, auth, plugin SDK and CLI host."""

__version__ = "0.1.0"
