"""``interlink doctor``: check configuration, plugin socket, issuer, token and the path to the
plugin, and say exactly what is wrong and how to fix it."""

from __future__ import annotations

import argparse
import asyncio
import stat
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .apiserver import ApiServerConfig
from .auth import JWKSCache
from .client import (
    Endpoint,
    InterLinkClient,
    PluginClient,
    RemoteError,
    Retry,
    static_token,
    token_file,
)
from .config import load_config
from .errors import ConfigError, InterLinkError
from .names import CONNECTIVITY_CONDITION, VK_NODE_SELECTOR
from .tenants import load_tenants


@dataclass
class Report:
    """Check results, printed as they come."""

    failures: int = 0
    lines: list[str] = field(default_factory=list)

    def ok(self, what: str) -> None:
        self._say(f"  ok    {what}")

    def warn(self, what: str, fix: str) -> None:
        """Something that works but that an operator should know (not a failure)."""
        self._say(f"  WARN  {what}\n        fix: {fix}")

    def fail(self, what: str, fix: str) -> None:
        self.failures += 1
        self._say(f"  FAIL  {what}\n        fix: {fix}")

    def _say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def register_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``interlink doctor``."""
    p = sub.add_parser("doctor", help="diagnose an interLink setup and say what to fix")
    p.add_argument("--config", "-c", type=Path, help="API server configuration to check")
    p.add_argument("--plugin", help="plugin URL to check (default: from --config)")
    p.add_argument("--url", help="API server URL to check, e.g. http://127.0.0.1:3000")
    p.add_argument("--token", help="bearer token to present to the API server")
    p.add_argument("--ca-file", type=Path, help="CA bundle for an HTTPS API server")
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="check the interLink virtual nodes of this Kubernetes cluster (needs [vk] or [dask])",
    )
    p.set_defaults(func=lambda a: asyncio.run(diagnose(a)))


async def diagnose(args: argparse.Namespace) -> int:
    """Run every check that the arguments allow; exit status 1 if any failed."""
    report = Report()
    plugin_url = args.plugin
    config: ApiServerConfig | None = None
    if args.config:
        try:
            config = load_config(ApiServerConfig, args.config)
            report.ok(f"configuration {args.config} is valid")
            plugin_url = plugin_url or config.plugin.resolved_url()
        except ConfigError as exc:
            report.fail(str(exc), "correct the keys named above")
        for problem in config.file_problems() if config else []:
            report.fail(problem, "the API server refuses to start until this is fixed")
        if config is not None:
            check_tenants(report, config)
    if plugin_url:
        await check_plugin(report, plugin_url, config)
    if config and config.auth.oidc:
        jwks = JWKSCache(config.auth.oidc)
        try:
            await jwks.key("")
            report.ok(f"OIDC issuer {config.auth.oidc.issuer} publishes {len(jwks._keys)} key(s)")
        except InterLinkError as exc:
            report.fail(exc.message, "check auth.oidc.issuer, auth.oidc.ca_file and the network")
    if args.url:
        await check_api(report, args.url, args.token, args.ca_file)
    if args.kubeconfig:
        await check_nodes(report, args.kubeconfig)
    if not (args.config or plugin_url or args.url or args.kubeconfig):
        report.fail(
            "nothing to check", "give --config, --plugin, --url or --kubeconfig (see --help)"
        )
    print("all checks passed" if not report.failures else f"{report.failures} check(s) failed")
    return 1 if report.failures else 0


def check_tenants(report: Report, config: ApiServerConfig) -> None:
    """Is there a tenant map, and is it valid? Without one: a warning (single-user mode)."""
    if config.tenants_file is None:
        report.warn(
            "no tenant map: every caller is its own tenant at the API server, but all jobs of "
            "all tenants run as the plugin's one Unix user and can read each other's files",
            "write a tenant map (docs/tenants.md) and set tenants_file in the API server's and "
            "the plugin's configuration",
        )
        return
    if not config.tenants_file.expanduser().is_file():
        return  # reported with the other missing files
    try:
        tenants = load_tenants(config.tenants_file)
    except ConfigError as exc:
        report.fail(str(exc), "correct the keys named above")
        return
    count = len(tenants.tenants) if tenants else 0
    report.ok(f"tenant map {config.tenants_file}: {count} tenant(s)")


def socket_problem(path: Path) -> str | None:
    """What is wrong with a unix socket path, if anything."""
    if not path.exists():
        return f"plugin socket {path} does not exist"
    if not stat.S_ISSOCK(path.stat().st_mode):
        return f"{path} is not a socket"
    return None


def socket_mode(path: Path) -> int:
    """The permission bits of a socket file."""
    return stat.S_IMODE(path.stat().st_mode)


async def check_plugin(report: Report, url: str, config: ApiServerConfig | None = None) -> None:
    """Is the plugin socket there (owner-only), and does the plugin answer a ping (with the
    token or client certificate of ``config``)?"""
    if url.startswith("unix://"):
        path = Path(url.removeprefix("unix://"))
        problem = socket_problem(path)
        if problem:
            report.fail(problem, "start the plugin (interlink plugin <backend>) or fix plugin.url")
            return
        report.ok(f"plugin socket {path} exists")
        mode = socket_mode(path)
        if mode & 0o077:
            report.fail(
                f"plugin socket {path} has mode {mode:04o}: other users can send it pods",
                "restart the plugin with this version (it makes its socket 0600)",
            )
    endpoint = config.plugin if config else None
    token = endpoint.token_file.expanduser() if endpoint and endpoint.token_file else None
    async with PluginClient(
        url,
        retry=Retry(attempts=1),
        timeout=10,
        token=token_file(token) if token else None,
        ca_file=endpoint.ca_file if endpoint else None,
        client_cert=endpoint.client_pair() if endpoint else None,
    ) as plugin:
        try:
            answer = await plugin.ping()
        except InterLinkError as exc:
            if exc.status_code == 401:
                report.fail(
                    f"plugin at {url} refuses us: {exc.message}",
                    "set plugin.token_file (the plugin's token_file) or plugin.client_cert/"
                    "client_key in the API server's configuration",
                )
                return
            report.fail(
                f"plugin at {url} does not answer: {exc.message}",
                "check that the plugin runs and its log for errors",
            )
            return
    res = answer.resources
    capacity = f" (cpu {res.cpu}, memory {res.memory}, pods {res.pods})" if res else ""
    report.ok(f"plugin answers ping: {answer.status}{capacity}")


async def check_api(report: Report, url: str, token: str | None, ca_file: Path | None) -> None:
    """Is the API server up, is the token accepted, does it reach its plugin?"""
    try:
        endpoint = Endpoint.parse(url, ca_file=ca_file)
        async with endpoint.session(10.0) as http, http.get(endpoint.base + "/healthz") as resp:
            resp.raise_for_status()
        report.ok(f"API server {url} is up")
    except aiohttp.ClientSSLError as exc:
        report.fail(
            f"API server {url} is not reachable: its TLS certificate is not trusted ({exc})",
            "pass --ca-file with the CA that signed the API server's certificate",
        )
        return
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        report.fail(
            f"API server {url} is not reachable: {exc!r}",
            "start it (interlink api / interlink up) or fix --url",
        )
        return
    if not token:
        report.fail(
            "no token given, cannot check authentication", "pass --token (e.g. $INTERLINK_TOKEN)"
        )
        return
    async with InterLinkClient(
        url, token=static_token(token), ca_file=ca_file, retry=Retry(attempts=1), timeout=15
    ) as api:
        try:
            answer = await api.ping()
        except RemoteError as exc:
            if exc.status_code in (401, 403):
                report.fail(
                    f"the API server refuses the token: {exc.message}",
                    "get a fresh token for this server's issuer and audience",
                )
            else:
                report.fail(
                    f"the API server cannot reach its plugin: {exc.message}",
                    "check the plugin (interlink doctor --config <api.yaml>)",
                )
            return
        except InterLinkError as exc:
            report.fail(exc.message, "check the URL and the network")
            return
    report.ok(f"token accepted; the API server reaches its plugin ({answer.status})")


async def check_nodes(report: Report, kubeconfig: Path) -> None:
    """Every interLink virtual node of the cluster: Ready, and connected to its edge."""
    try:
        import kr8s.asyncio

        from .kube import KubeJSON
    except ImportError:
        report.fail(
            "cannot check virtual nodes: the kr8s package is not installed",
            "pip install 'interlink[vk]'",
        )
        return
    try:
        api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
        async with KubeJSON(api) as kube:
            answer = await kube.call("GET", "nodes", params={"labelSelector": VK_NODE_SELECTOR})
    except Exception as exc:
        report.fail(
            f"cannot list nodes with {kubeconfig}: {exc}",
            "check the kubeconfig's server and credentials (kubectl get nodes)",
        )
        return
    nodes = answer.get("items") or []
    if not nodes:
        report.fail(
            "no interLink virtual node in this cluster",
            "start one with interlink vk -c vk.yaml (the test world: tests/world/up)",
        )
    for node in nodes:
        name = node["metadata"]["name"]
        conds = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
        link = conds.get(CONNECTIVITY_CONDITION) or {}
        if (conds.get("Ready") or {}).get("status") == "True":
            report.ok(f"virtual node {name} is Ready ({link.get('message') or 'edge reachable'})")
        else:
            why = link.get("message") or (conds.get("Ready") or {}).get("message") or "no status"
            report.fail(
                f"virtual node {name} is not Ready: {why}",
                f"check its VK's log and its edge (interlink doctor --url <edge URL>); "
                f"kubectl describe node {name}",
            )
