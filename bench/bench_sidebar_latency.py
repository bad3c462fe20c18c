"""Sidebar latency: a worker pod's state change written by the virtual kubelet → the browser's
DOM shows it in the interLink sidebar's worker table.

The world: the test world's control plane, one ``interlink vk`` process in front of the real
SLURM (API server + SLURM plugin, ``runtime: host``), a cluster owned by another process (a
"kernel") in Kubernetes mode whose workers are ``sleep`` (they never connect, so every change
after ``queued`` is a VK patch), JupyterLab with the extension, and Debian's chromium.

A Kubernetes watch in this process notes when each pod first shows each state (the moment the
VK's patch reaches a watcher); a MutationObserver in the page notes when the table first shows
it. The script grows the cluster one pod every ``--every`` seconds through the REST API.

    .venv/bin/python bench/bench_sidebar_latency.py [--pods 25] [--every 2.5]

Prints a table and writes bench/out/sidebar_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import kr8s.asyncio  # noqa: E402
import machine  # noqa: E402  (bench/, next to this script)
from percentiles import summary_ms  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from interlink_dask.pods import CLUSTER_LABEL  # noqa: E402
from interlink_dask.states import view_of_kube_pod  # noqa: E402
from tests.helpers.jupyter import (  # noqa: E402
    TOKEN,
    jupyter_server,
    kernel_cluster,
    lab_python,
    write_dask_config,
)
from tests.helpers.k8s import ensure_k8s  # noqa: E402
from tests.helpers.slurm import ensure_slurm  # noqa: E402
from tests.helpers.vk_world import World  # noqa: E402

NAME = "lat"
VK_STATES = ("starting", "running")  # changes the VK writes (queued is the pod's creation)
OBSERVER = """
() => {
  window.__seen = new Set();
  window.__dom = [];
  const note = () => {
    const t = Date.now();
    for (const el of document.querySelectorAll('[data-testid^="interlink-row-state-"]')) {
      const pod = el.dataset.testid.slice('interlink-row-state-'.length);
      const state = (el.textContent || '').trim().split(/\\s+/)[0];
      const key = pod + '|' + state;
      if (!window.__seen.has(key)) { window.__seen.add(key); window.__dom.push([pod, state, t]); }
    }
  };
  new MutationObserver(note).observe(document.querySelector('#interlink-sidebar'),
    {subtree: true, childList: true, characterData: true, attributes: true});
  note();
}
"""


async def watch_pods(kube: Any, ns: str, seen: dict[tuple[str, str], float]) -> None:
    """First time this process sees each (pod, state)."""
    async for _event, pod in kube.watch(
        "pods", namespace=ns, label_selector=f"{CLUSTER_LABEL}={NAME}"
    ):
        view = view_of_kube_pod(dict(pod.raw))
        seen.setdefault((pod.name, view.state.value), time.time())


async def run(pods: int, every: float) -> dict[str, Any]:
    k8s = ensure_k8s()
    slurm = ensure_slurm()
    with tempfile.TemporaryDirectory(prefix="bench-sidebar-") as tmp:
        root = Path(tmp)
        world = World(root / "world", k8s, slurm.partition)
        await world.start()
        try:
            config = write_dask_config(
                root / "dask",
                {
                    "kubeconfig": str(k8s.kubeconfig),
                    "namespace": world.ns,
                    "node": world.node,
                    "image": "none",
                    "worker-command": ["sh", "-c", "sleep 600", "worker"],
                    "memory": "64MiB",
                    "status-interval": 2,
                },
            )
            env = {"KUBECONFIG": str(k8s.kubeconfig)}
            return await measure(root, config, env, world.ns, pods, every)
        finally:
            world.stop()


async def measure(
    root: Path, config: Path, env: dict[str, str], ns: str, pods: int, every: float
) -> dict[str, Any]:
    seen: dict[tuple[str, str], float] = {}
    kube = await kr8s.asyncio.api(kubeconfig=env["KUBECONFIG"])
    watcher = asyncio.create_task(watch_pods(kube, ns, seen))
    with (
        kernel_cluster(config, {"name": NAME}, env=env),
        jupyter_server(root / "lab", config, lab=True, python=lab_python(), env=env) as lab,
    ):
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{lab.url}/lab?token={TOKEN}&reset")
            tab = page.locator('.jp-SideBar [data-id="interlink-sidebar"]')
            await tab.wait_for(timeout=120_000)
            if "lm-mod-current" not in (await tab.get_attribute("class") or ""):
                await tab.click()
            await page.get_by_test_id(f"interlink-workers-toggle-{NAME}").click(timeout=120_000)
            await page.evaluate(OBSERVER)
            async with httpx.AsyncClient(
                base_url=lab.url, headers={"Authorization": f"token {TOKEN}"}, timeout=60
            ) as http:
                for jobs in range(1, pods + 1):
                    answer = await http.post(lab.api(f"clusters/{NAME}/scale"), json={"jobs": jobs})
                    answer.raise_for_status()
                    await asyncio.sleep(every)
                await asyncio.sleep(5)
                dom = await page.evaluate("window.__dom")
                await http.post(lab.api(f"clusters/{NAME}/scale"), json={"jobs": 0})
            await browser.close()
    watcher.cancel()
    shown = {(pod, state): t / 1000 for pod, state, t in dom}
    samples = [shown[key] - t for key, t in seen.items() if key[1] in VK_STATES and key in shown]
    missed = [key for key in seen if key[1] in VK_STATES and key not in shown]
    return {"latency": summary_ms(samples), "changes": len(samples), "not_shown": len(missed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=25)
    parser.add_argument("--every", type=float, default=2.5)
    args = parser.parse_args()
    before = machine.start()
    result = asyncio.run(run(args.pods, args.every))
    result["machine"] = machine.finish(before)
    lat = result["latency"]
    result["added_ms"] = {"DOM shows a VK patch, p50, after a plain watcher": lat["p50_ms"]}
    print(f"sidebar latency, VK patch → DOM ({result['changes']} changes)")
    print(f"{'p50':>8} {'p95':>8} {'min':>8} {'max':>8}   not shown")
    print(
        f"{lat['p50_ms']:7.0f}ms {lat['p95_ms']:7.0f}ms {lat['min_ms']:7.0f}ms "
        f"{lat['max_ms']:7.0f}ms   {result['not_shown']}"
    )
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sidebar_latency.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
