"""The local plugin's per-pod runner: ``python -m interlink_plugins.local.runner <pod_dir>``.

The runner itself is :mod:`interlink_core.podrunner` (shared with the batch backends, whose jobs
run it with the compute node's ``python3``); this module keeps the command line the plugin starts
and recognises its runners by.
"""

from __future__ import annotations

import sys

from interlink_core.podrunner import ORPHAN_CHECK, Runner, main

__all__ = ["ORPHAN_CHECK", "Runner", "main"]

if __name__ == "__main__":
    sys.exit(main())
