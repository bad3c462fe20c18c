"""``interlink vk --config vk.yaml``: run one virtual node (node + lease + pod sync + heartbeat
reaper + kubelet API) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import kr8s.asyncio

from interlink_core.client import InterLinkClient
from interlink_core.config import load_config

from .config import VKConfig
from .kube import Kube
from .kubelet import serve_kubelet
from .metrics import VKMetrics
from .node import NodeController
from .pods import PodController
from .reaper import HeartbeatReaper

log = logging.getLogger("interlink.vk")


async def serve(config: VKConfig) -> None:
    """Run the node and pod controllers until a termination signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api = await kr8s.asyncio.api(kubeconfig=str(config.kubeconfig) if config.kubeconfig else None)
    e = config.edge
    cert = (e.client_cert, e.client_key) if e.client_cert and e.client_key else None
    async with InterLinkClient(
        e.url,
        token=e.token_source(),
        ca_file=e.ca_file,
        client_cert=cert,
        timeout=e.timeout_seconds,
    ) as edge:
        metrics = VKMetrics()
        kube = Kube(api)
        node = NodeController(api, config, edge, metrics=metrics)
        pods = PodController(kube, config, edge, metrics)
        reaper = HeartbeatReaper(kube, config, pods.snapshot, metrics)
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
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = load_config(
        VKConfig,
        args.config,
        {"kubeconfig": str(args.kubeconfig) if args.kubeconfig else None},
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(config))
    return 0
