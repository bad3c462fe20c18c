"""interLink plugins: one subpackage per batch-system backend (import name ``interlink_plugins``)."""
