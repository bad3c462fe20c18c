"""``interlink up``: an API server and the local plugin on this machine, with a development
token, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from .embedded import EmbeddedEdge

DEFAULT_STATE = Path("~/.local/state/interlink/up")


def register_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``interlink up``."""
    p = sub.add_parser("up", help="run an edge on this machine (API server + local plugin)")
    p.add_argument("--port", type=int, default=3000, help="API server port (default 3000)")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    p.add_argument("--token", help="development token to accept (default: a random one)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    edge = EmbeddedEdge(state_dir=args.state_dir.expanduser(), port=args.port)
    if args.token:
        edge.token = args.token
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with edge:
        (edge.state_dir / "token").write_text(edge.token)
        (edge.state_dir / "token").chmod(0o600)
        print(
            f"interLink edge is up (INSECURE development token: local use only)\n"
            f"  API server : {edge.url}\n"
            f"  plugin     : local, unix://{edge.plugin_socket}\n"
            f"  logs       : {edge.state_dir / 'logs'}\n"
            f"Use it from a shell:\n"
            f"  export INTERLINK_URL={edge.url}\n"
            f"  export INTERLINK_TOKEN=$(cat {edge.state_dir / 'token'})\n"
            f"  interlink doctor --url $INTERLINK_URL --token $INTERLINK_TOKEN\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        while not stop.wait(0.5):
            if any(p.poll() is not None for p in edge.procs):
                print(f"a service exited; see {edge.state_dir / 'logs'}")
                return 1
    return 0
