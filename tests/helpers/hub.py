"""A real JupyterHub for tests: ``jupyterhub`` (PyPI) with ``configurable-http-proxy`` (npm),
``InterLinkSpawner`` (KubeSpawner) against the test world's control plane, the dummy
authenticator and an admin service token; and virtual nodes as real processes (plugin, API
server, ``interlink vk``) for it to spawn on."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.k8s import K8sInfo, kubectl
from tests.helpers.vk import loopback_ip, start_vk_process
from tests.helpers.world import REPO, Service, free_port, need, start_api, start_plugin, stop

CHP_DIR = Path(os.environ.get("INTERLINK_CHP_DIR", "~/.cache/interlink-world/chp")).expanduser()
CHP = CHP_DIR / "node_modules/.bin/configurable-http-proxy"
SINGLEUSER = str(Path(sys.executable).parent / "jupyterhub-singleuser")
EDGE_TOKEN = "hub-edge-dev-token"


def ensure_chp() -> Path:
    """configurable-http-proxy from npm, in a cache directory outside the repository
    (tests/world/system-up installs it too)."""
    if not CHP.exists():
        CHP_DIR.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CHP_DIR),
                 "configurable-http-proxy@5"],
                capture_output=True, timeout=300, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            pass
    need(CHP.exists(), f"configurable-http-proxy is not installed in {CHP_DIR} (npm install)")
    return CHP


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    """Poll ``cond`` until it returns something truthy (raises AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# --- virtual nodes as processes -------------------------------------------------------------------


@dataclass
class VirtualNode:
    """A virtual node: plugin + API server (development token) + ``interlink vk``."""

    k8s: K8sInfo
    node: str
    root: Path
    backend: str
    plugin_config: dict[str, Any]
    api_port: int = 0
    plugin: Service | None = None
    api: Service | None = None
    vk: subprocess.Popen[bytes] | None = None

    def start(self) -> VirtualNode:
        self.plugin = start_plugin(self.root / "plugin", self.backend, self.plugin_config)
        self.start_edge()
        self.vk = start_vk_process(
            self.k8s,
            self.root,
            self.node,
            f"http://127.0.0.1:{self.api_port}",
            EDGE_TOKEN,
            internal_ip=loopback_ip(),
            status_interval_seconds=1,
            ping_interval_seconds=1,
        )
        wait_for(self.usable, 60, f"virtual node {self.node} to be Ready")
        return self

    def start_edge(self) -> None:
        """(Re)start the API server on the same port."""
        assert self.plugin is not None
        self.api_port = self.api_port or free_port()
        self.api = start_api(
            self.root / "api",
            {"plugin": {"url": self.plugin.url}, "auth": {"insecure_dev_token": EDGE_TOKEN}},
            port=self.api_port,
        )

    def stop_edge(self) -> None:
        if self.api is not None:
            self.api.stop()

    def conditions(self) -> dict[str, str]:
        out = kubectl(self.k8s, "get", "node", self.node, "-o", "json")
        if out.returncode != 0:
            return {}
        conds = json.loads(out.stdout)["status"].get("conditions") or []
        return {c["type"]: c["status"] for c in conds}

    def usable(self) -> bool:
        conds = self.conditions()
        return conds.get("Ready") == "True" and conds.get("InterLinkConnectivity") == "True"

    def stop(self) -> None:
        if self.vk is not None:
            stop(self.vk)
        self.stop_edge()
        if self.plugin is not None:
            self.plugin.stop()
        kubectl(self.k8s, "delete", "node", self.node, "--wait=false")
        kubectl(self.k8s, "delete", "lease", self.node, "-n", "kube-node-lease", "--wait=false")


# --- the hub --------------------------------------------------------------------------------------


HUB_CONFIG = """\
import sys
from interlink_jupyter.hub import interlink_profiles
from interlink_jupyter.hub.spawner import InterLinkSpawner

c.JupyterHub.bind_url = {bind_url!r}
c.JupyterHub.hub_bind_url = {hub_url!r}
c.JupyterHub.hub_connect_url = {hub_url!r}
c.ConfigurableHTTPProxy.api_url = {proxy_api!r}
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.allow_named_servers = True
# spawn requests answer 202 at once; the spawn is followed on its progress stream
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
c.JupyterHub.services = [{{"name": "test-admin", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [
    {{
        "name": "test-admin",
        "scopes": ["admin:users", "admin:servers", "access:servers", "read:hub", "tokens"],
        "services": ["test-admin"],
    }}
]
c.JupyterHub.spawner_class = InterLinkSpawner
c.KubeSpawner.namespace = {namespace!r}
c.KubeSpawner.profile_list = interlink_profiles({profiles!r}, kubeconfig={kubeconfig!r})
c.KubeSpawner.cmd = [{singleuser!r}]
c.KubeSpawner.args = ["--allow-root"]
c.KubeSpawner.image = "none"
c.KubeSpawner.notebook_dir = {notebooks!r}
c.KubeSpawner.delete_grace_period = 1
c.KubeSpawner.http_timeout = 60
c.KubeSpawner.start_timeout = 300
c.KubeSpawner.environment = {{"JUPYTER_RUNTIME_DIR": {runtime!r}}}
"""


@dataclass
class Hub:
    """A running hub; ``api`` calls go to its REST API with the admin service's token."""

    k8s: K8sInfo
    url: str
    token: str
    namespace: str
    proc: subprocess.Popen[bytes]
    log: Path
    api_url: str
    """The hub's own API URL (what single-user servers call)."""
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=30
        )

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, "/hub/api" + path, **kwargs)

    @staticmethod
    def server_path(user: str, server: str = "") -> str:
        return f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"

    def spawn(self, user: str, options: dict[str, Any], server: str = "") -> httpx.Response:
        """Create the user (if new) and ask for a server with these ``user_options``."""
        self.api("POST", f"/users/{user}")
        return self.api("POST", self.server_path(user, server), json=options)

    def progress(self, user: str, server: str = "", timeout: float = 180) -> list[dict[str, Any]]:
        """The spawn's progress events (the hub's event stream) until ready or failed."""
        events: list[dict[str, Any]] = []
        path = "/hub/api" + self.server_path(user, server) + "/progress"
        with self.http.stream("GET", path, timeout=timeout) as resp:
            assert resp.status_code == 200, resp.read()
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("ready") or event.get("failed"):
                        break
        return events

    def stop_server(self, user: str, server: str = "") -> None:
        resp = self.api("DELETE", self.server_path(user, server))
        assert resp.status_code in (202, 204), resp.text
        wait_for(lambda: self.server_state(user, server) is None, 120, f"{user}'s server to stop")

    def server_state(self, user: str, server: str = "") -> dict[str, Any] | None:
        model = self.api("GET", f"/users/{user}").json()
        return (model.get("servers") or {}).get(server)

    def pods(self) -> list[dict[str, Any]]:
        out = kubectl(self.k8s, "get", "pods", "-n", self.namespace, "-o", "json")
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout)["items"])

    def login(self, user: str) -> httpx.Client:
        """A browser-like session of ``user`` (dummy authenticator: any password)."""
        client = httpx.Client(base_url=self.url, timeout=30, follow_redirects=True)
        client.get("/hub/login")
        xsrf = client.cookies.get("_xsrf", "")
        resp = client.post("/hub/login", data={"username": user, "password": "x", "_xsrf": xsrf})
        assert resp.status_code == 200, resp.text[:2000]
        return client

    def close(self) -> None:
        self.http.close()
        stop(self.proc, timeout=60)


def start_hub(root: Path, k8s: K8sInfo, profiles: dict[str, Any]) -> Hub:
    """Start ``jupyterhub`` in ``root`` with these interLink profiles (live form) in a
    namespace of its own; waits until the proxy answers."""
    root.mkdir(parents=True, exist_ok=True)
    chp = ensure_chp()
    namespace = f"hub-{uuid.uuid4().hex[:6]}"
    assert kubectl(k8s, "create", "namespace", namespace).returncode == 0
    port, hub_port, api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(16)
    (root / "profiles.json").write_text(json.dumps(profiles))
    (root / "notebooks").mkdir(exist_ok=True)
    config = HUB_CONFIG.format(
        bind_url=f"http://127.0.0.1:{port}",
        hub_url=f"http://127.0.0.1:{hub_port}",
        proxy_api=f"http://127.0.0.1:{api_port}",
        chp=str(chp),
        root=root,
        token=token,
        namespace=namespace,
        profiles=str(root / "profiles.json"),
        kubeconfig=str(k8s.kubeconfig),
        singleuser=SINGLEUSER,
        notebooks=str(root / "notebooks"),
        runtime=str(root / "runtime"),
    )
    (root / "jupyterhub_config.py").write_text(config)
    log = root / "hub.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(k8s.kubeconfig),
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
        cwd=root,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    hub = Hub(
        k8s,
        f"http://127.0.0.1:{port}",
        token,
        namespace,
        proc,
        log,
        f"http://127.0.0.1:{hub_port}/hub/api",
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"jupyterhub exited {proc.returncode}:\n{log.read_text()}")
        try:
            return hub.api("GET", "/").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 60, "jupyterhub to answer through the proxy")
    except BaseException:
        hub.close()
        raise
    return hub
