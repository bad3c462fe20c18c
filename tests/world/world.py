"""The whole test world in one command: SLURM, podman (tests/world/podman-up), the Kubernetes
control plane, and two virtual
nodes on it, each an ``interlink vk`` in front of its own edge (API server + plugin):

- ``world-local``: the ``local`` plugin, the node for pods that must run "in-cluster"
  (Dask schedulers, notebook servers, the VK's own Helm deployment);
- ``world-slurm``: the ``slurm`` plugin (``runtime: host``) on the test world's SLURM.

    tests/world/up            # idempotent; prints KUBECONFIG= and NODES=
    tests/world/down          # stops the VKs and edges (by pid file); --all: SLURM and k8s too

State (configs, logs, pid files) under ``$INTERLINK_WORLD_STATE/nodes`` (default
``~/.local/state/interlink-world/nodes``). Run with the project's venv (the shims do).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("INTERLINK_WORLD_STATE", "~/.local/state/interlink-world")).expanduser()
NODES = STATE / "nodes"
INTERLINK = [sys.executable, "-m", "interlink_core.cli"]
TOKEN = "world-dev-token"
# name, plugin backend, plugin settings, API port, node InternalIP
SPECS = [
    ("world-local", "local", {}, 3101, "127.0.0.2"),
    ("world-slurm", "slurm", {"runtime": "host"}, 3102, "127.0.0.3"),
]


def say(msg: str) -> None:
    print(f"world: {msg}", file=sys.stderr, flush=True)


def env_lines(out: str) -> dict[str, str]:
    """The ``KEY=value`` lines a world script prints."""
    found = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            found[key] = value.strip()
    return found


def alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def start(name: str, argv: list[str], root: Path) -> None:
    """Start one daemon unless its pid file names a live process."""
    pidfile = root / f"{name}.pid"
    if alive(pidfile):
        return
    with (root / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(proc.pid))


def wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"world: {url} did not answer in {timeout:.0f}s")


def kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The world's own kubectl (built with the control plane) or the one on PATH."""
    built = sorted(Path("~/.cache/interlink-world").expanduser().glob("k8s-*/bin/kubectl"))
    binary = os.environ.get("KUBECTL") or (str(built[-1]) if built else "kubectl")
    return subprocess.run(
        [binary, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True
    )


def node_up(kubeconfig: str, node: str, ip: str, timeout: float = 120) -> None:
    """Approve the node's kubelet-serving CSR (what the cluster admin does) until the node is
    Ready and its kubelet API listens."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        csrs = json.loads(kubectl(kubeconfig, "get", "csr", "-o", "json").stdout or "{}")
        for csr in csrs.get("items", []):
            labels = csr["metadata"].get("labels") or {}
            done = (csr.get("status") or {}).get("conditions")
            if labels.get("interlink.eu/node") == node and not done:
                kubectl(kubeconfig, "certificate", "approve", csr["metadata"]["name"])
        got = kubectl(kubeconfig, "get", "node", node, "-o", "json")
        if got.returncode == 0:
            conds = json.loads(got.stdout)["status"].get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
            with socket.socket() as s:
                s.settimeout(1)
                listening = s.connect_ex((ip, 10250)) == 0
            if ready and listening:
                return
        time.sleep(0.5)
    raise SystemExit(f"world: node {node} did not become Ready in {timeout:.0f}s")


def up() -> int:
    subprocess.run([str(HERE / "slurm-up")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(HERE / "podman-up")], check=True, stdout=subprocess.DEVNULL)
    k8s = env_lines(
        subprocess.run([str(HERE / "k8s-up")], check=True, capture_output=True, text=True).stdout
    )
    kubeconfig = k8s["KUBECONFIG"]
    os.environ["KUBECTL"] = f"{k8s['K8S_BIN_DIR']}/kubectl"
    for name, backend, settings, port, ip in SPECS:
        root = NODES / name
        root.mkdir(parents=True, exist_ok=True)
        sock = root / "plugin.sock"
        (root / "plugin.yaml").write_text(
            yaml.safe_dump({"state_dir": str(root / "plugin"), "socket": str(sock), **settings})
        )
        (root / "api.yaml").write_text(
            yaml.safe_dump(
                {
                    "listen": {"host": "127.0.0.1", "port": port},
                    "plugin": {"url": f"unix://{sock}"},
                    "auth": {"insecure_dev_token": TOKEN},
                    "state_dir": str(root / "api"),
                }
            )
        )
        (root / "vk.yaml").write_text(
            yaml.safe_dump(
                {
                    "node_name": name,
                    "kubeconfig": kubeconfig,
                    "edge": {"url": f"http://127.0.0.1:{port}", "token": TOKEN},
                    "internal_ip": ip,
                    "state_dir": str(root / "vk"),
                }
            )
        )
        start("plugin", [*INTERLINK, "plugin", backend, "-c", str(root / "plugin.yaml")], root)
        start("api", [*INTERLINK, "api", "-c", str(root / "api.yaml")], root)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        start("vk", [*INTERLINK, "vk", "-c", str(root / "vk.yaml")], root)
    for name, _, _, _, ip in SPECS:
        node_up(kubeconfig, name, ip)
        say(f"node {name} Ready (logs in {NODES / name})")
    print(f"KUBECONFIG={kubeconfig}")
    print(f"K8S_BIN_DIR={k8s['K8S_BIN_DIR']}")
    print("NODES=" + ",".join(s[0] for s in SPECS))
    return 0


def stop_pid(pidfile: Path) -> None:
    if not alive(pidfile):
        pidfile.unlink(missing_ok=True)
        return
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def down(everything: bool) -> int:
    for name, *_ in SPECS:
        for daemon in ("vk", "api", "plugin"):
            stop_pid(NODES / name / f"{daemon}.pid")
    kubeconfig = STATE / "k8s" / "admin.kubeconfig"
    if kubeconfig.exists():
        for name, *_ in SPECS:
            kubectl(str(kubeconfig), "delete", "node", name, "--ignore-not-found")
    if everything:
        subprocess.run([str(HERE / "k8s-down")], check=False)
        subprocess.run([str(HERE / "slurm-down")], check=False)
    say("stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--all", action="store_true", help="down: also stop SLURM and k8s")
    args = parser.parse_args()
    return up() if args.action == "up" else down(args.all)


if __name__ == "__main__":
    sys.exit(main())
