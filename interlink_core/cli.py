"""The ``interlink`` command: a host that finds its subcommands through entry points
(group ``interlink.commands``), so other packages and sites can add their own."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from . import __version__
from .errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every installed subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="interlink",
        description="Offload Kubernetes pods and Dask clusters to HPC and Grid batch systems.",
    )
    parser.add_argument("--version", action="version", version=f"interlink {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="interlink.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:  # the command's extra is not installed
            _unavailable(sub, ep.name, exc)
            continue
        register(sub)
    return parser


def _unavailable(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, exc: ImportError
) -> None:
    missing = exc.name or str(exc)
    p = sub.add_parser(name, help=f"(not installed: needs {missing})", add_help=False)

    def explain(_: argparse.Namespace) -> int:
        print(
            f"interlink {name}: this command needs the Python package {missing!r}, which is "
            f"not installed; install it with: pip install 'interlink[{name}]' "
            "(or 'interlink[all]')",
            file=sys.stderr,
        )
        return 2

    p.set_defaults(func=explain, unavailable=True)


def main(argv: list[str] | None = None) -> int:
    """Run the ``interlink`` command line."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "unavailable", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"interlink {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
