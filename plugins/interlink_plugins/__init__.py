"""interLink plugins: one subpackage per batch-system backend."""
