"""A notebook server on the SLURM virtual node through a real JupyterHub, against raw ``sbatch``
of the same ``jupyterhub-singleuser``, on the same SLURM, interleaved.

* hub: ``POST /hub/api/users/<u>/server`` (SLURM profile, InterLinkSpawner) → ``GET
  /user/<u>/api/status`` answers 200 **through the proxy** (polled every 50 ms);
* sbatch: ``sbatch --wrap 'jupyterhub-singleuser ...'`` with the environment a spawner gives it
  (a token of a hub user) → the same URL answers 200 **on the server's own port**.

The virtual node is ``interlink vk`` as its own process (status every 1 s, default fast status
while pods start) behind the API server and the SLURM plugin (host runtime).

    .venv/bin/python bench/bench_hub_spawn.py [--n 10]

Prints a table and writes bench/out/hub_spawn.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import machine  # noqa: E402  (bench/, next to this script)
from percentiles import summary_ms  # noqa: E402

from tests.helpers.hub import SINGLEUSER, Hub, VirtualNode, start_hub  # noqa: E402
from tests.helpers.k8s import ensure_k8s, kubectl  # noqa: E402
from tests.helpers.slurm import ensure_slurm, scancel  # noqa: E402
from tests.helpers.world import free_port  # noqa: E402

POLL = 0.05


def answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def hub_once(hub: Hub, user: str) -> float:
    hub.api("POST", f"/users/{user}")
    t0 = time.perf_counter()
    resp = hub.api("POST", f"/users/{user}/server", json={"profile": "slurm"})
    assert resp.status_code in (201, 202), resp.text
    while not answers(hub.http, f"/user/{user}/api/status"):
        if time.perf_counter() - t0 > 300:
            raise RuntimeError(f"{user}'s server did not answer in 300 s")
        time.sleep(POLL)
    elapsed = time.perf_counter() - t0
    hub.stop_server(user)
    return elapsed


def sbatch_once(hub: Hub, partition: str, tmp: Path, user: str) -> float:
    """The same single-user command, submitted by hand with what a spawner would set."""
    hub.api("POST", f"/users/{user}")
    token = hub.api(
        "POST", f"/users/{user}/tokens", json={"note": "bench", "expires_in": 3600}
    ).json()["token"]
    port = free_port()
    prefix = f"/user/{user}/"
    hub_api = hub.api_url
    env = {
        "JUPYTERHUB_API_TOKEN": token,
        "JPY_API_TOKEN": token,
        "JUPYTERHUB_API_URL": hub_api,
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{port}{prefix}",
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(
            [f"access:servers!server={user}/", f"access:servers!user={user}"]
        ),
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps(
            [f"access:servers!server={user}/", f"access:servers!user={user}"]
        ),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
    }
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = f"export {exports}; exec {SINGLEUSER} --allow-root --notebook-dir={tmp}"
    t0 = time.perf_counter()
    job = subprocess.run(
        ["sbatch", "--parsable", f"--partition={partition}", "--cpus-per-task=1", "--mem=1G",
         f"--output={tmp}/sbatch-%j.out", "--wrap", command],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    url = f"http://127.0.0.1:{port}{prefix}api/status"
    with httpx.Client(headers={"Authorization": f"token {token}"}, timeout=5) as client:
        while not answers(client, url):
            if time.perf_counter() - t0 > 300:
                raise RuntimeError(f"sbatch job {job} did not answer in 300 s")
            time.sleep(POLL)
    elapsed = time.perf_counter() - t0
    print(f"  sbatch job {job} answered after {elapsed:.2f} s", flush=True)
    scancel(job)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    args = parser.parse_args()
    k8s, slurm = ensure_k8s(), ensure_slurm()
    before = machine.start()
    tag = uuid.uuid4().hex[:5]
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmpdir:
        tmp = Path(tmpdir)
        node = VirtualNode(
            k8s,
            f"bench-hub-{tag}",
            tmp / "node",
            "slurm",
            {"runtime": "host", "partition": slurm.partition},
        )
        node.start()
        profiles = {
            "profiles": [
                {
                    "slug": "slurm",
                    "display_name": "SLURM",
                    "node": node.node,
                    "resources": [{"cpu": 1, "memory": "1GiB"}],
                    "connect_host": "127.0.0.1",
                }
            ]
        }
        hub = start_hub(tmp / "hub", k8s, profiles)
        samples: dict[str, list[float]] = {"hub": [], "sbatch": []}
        try:
            hub_once(hub, f"warmup-{tag}")  # first spawn loads the reflectors
            for i in range(args.n):
                order = ["hub", "sbatch"] if i % 2 == 0 else ["sbatch", "hub"]
                for kind in order:
                    if kind == "hub":
                        samples["hub"].append(hub_once(hub, f"bench-{i}"))
                    else:
                        samples["sbatch"].append(sbatch_once(hub, slurm.partition, tmp, f"raw-{i}"))
                print(f"{i}: hub {samples['hub'][-1]:.2f} s, sbatch {samples['sbatch'][-1]:.2f} s")
        finally:
            hub.close()
            node.stop()
            kubectl(k8s, "delete", "namespace", hub.namespace, "--wait=false")
    ratio = statistics.median(samples["hub"]) / statistics.median(samples["sbatch"])
    result: dict[str, Any] = {
        "n": args.n,
        "machine": machine.finish(before),
        "ratios": {"spawn → answering, median, hub / sbatch": ratio},
        "hub": summary_ms(samples["hub"]),
        "sbatch": summary_ms(samples["sbatch"]),
        "median_ratio": ratio,
        "samples_s": samples,
    }
    print(f"\n{'':8}{'p50 ms':>10}{'p95 ms':>10}{'min ms':>10}{'max ms':>10}")
    for kind in ("hub", "sbatch"):
        s = result[kind]
        print(
            f"{kind:8}{s['p50_ms']:10.0f}{s['p95_ms']:10.0f}{s['min_ms']:10.0f}{s['max_ms']:10.0f}"
        )
    print(f"median ratio hub / sbatch: {ratio:.2f} (target <= 1.3)")
    out = REPO / "bench/out"
    out.mkdir(exist_ok=True)
    (out / "hub_spawn.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
