"""``interlink vk --config vk.yaml``: run one virtual node (node + lease + pod sync + heartbeat
reaper + kubelet API) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from interlink_core.client import InterLinkClient
from interlink_core.config import load_config
from interlink_core.errors import ConfigError

from .config import VKConfig
from .kube import Kube, kube_api
from .kubelet import serve_kubelet
from .metrics import VKMetrics
from .node import NodeController
from .pods import PodController
from .reaper import HeartbeatReaper
from .remove import remove_node

log = logging.getLogger("interlink.vk")


async def serve(config: VKConfig) -> None:
    """Run the node and pod controllers until a termination signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api = await kube_api(config)
    e = config.edge
    cert = (e.client_cert, e.client_key) if e.client_cert and e.client_key else None
    async with (
        InterLinkClient(
            e.url,
            token=e.token_source(),
            ca_file=e.ca_file,
            client_cert=cert,
            timeout=e.timeout_seconds,
        ) as edge,
        Kube(api) as kube,
    ):
        metrics = VKMetrics()
        node = NodeController(kube, config, edge, metrics=metrics)
        pods = PodController(kube, config, edge, metrics)
        reaper = HeartbeatReaper(kube, config, pods.leased, metrics)
        log.info("virtual node %s: edge %s", config.node_name, e.url)
        state = config.state_dir.expanduser() / config.node_name
        await asyncio.gather(
            node.run(stop),
            pods.run(stop),
            reaper.run(stop),
            serve_kubelet(config, kube, edge, stop, state, metrics),
        )


def register_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``interlink vk``."""
    p = sub.add_parser("vk", help="run a virtual kubelet (one virtual node)")
    p.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig (kubeconfig)")
    p.add_argument(
        "--internal-ip",
        metavar="IP",
        help="the node's InternalIP, where the kubelet API listens (internal_ip); e.g. the "
        "pod's IP from the downward API",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_setting,
        help="set one configuration key over the file (dotted for nested keys, the value read "
        "as YAML), e.g. --set edge.token_file=/etc/interlink/edge/token; repeatable",
    )
    p.add_argument(
        "--remove-node",
        action="store_true",
        help="instead of serving the node: cordon it, delete its pods (the running VK cancels "
        "their jobs), optionally stop the VK's Deployment, delete the node, and exit",
    )
    p.add_argument(
        "--stop-deployment",
        metavar="NAMESPACE/NAME",
        help="with --remove-node: the VK's Deployment, deleted before the node",
    )
    p.add_argument(
        "--remove-timeout",
        type=float,
        default=240.0,
        metavar="SECONDS",
        help="with --remove-node: give up after this long (240)",
    )
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_run)


def _setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--set``: the value parsed as a YAML scalar, list or mapping."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{key}: the value is not valid YAML: {exc}") from None
    return key.strip(), parsed


def config_from_args(args: argparse.Namespace) -> VKConfig:
    """The configuration file with the command line's overrides, validated once."""
    overrides: dict[str, Any] = dict(args.settings)
    if args.kubeconfig:
        overrides["kubeconfig"] = str(args.kubeconfig)
    if args.internal_ip:
        overrides["internal_ip"] = args.internal_ip
    return load_config(VKConfig, args.config, overrides)


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    problem = config.kubeconfig_problem(os.environ)
    if problem:
        raise ConfigError(problem)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if logging.getLogger().level > logging.DEBUG:  # a line per Kubernetes request: debug only
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.remove_node:
        asyncio.run(remove_node(config, args.stop_deployment, args.remove_timeout))
    else:
        asyncio.run(serve(config))
    return 0
