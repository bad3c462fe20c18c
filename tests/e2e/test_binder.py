"""Binder, as repo2docker orders it but without Docker: a clean venv, ``pip install -r
binder/requirements.txt`` from the repository root, ``binder/postBuild``, then ``binder/start``
with the user's command. The demo notebook runs to the end with nbclient, and in a real
browser its cluster shows in the interLink sidebar while it runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import open_lab_sidebar, shot
from tests.helpers.world import REPO, free_port

pytestmark = pytest.mark.integration
TOKEN = "binder-lab-token"
WAIT = 180_000  # ms
RUN_NOTEBOOK = textwrap.dedent(
    """
    import sys
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3").execute(cwd=sys.argv[3])
    nbformat.write(nb, sys.argv[2])
    """
)


@dataclass
class BinderEnv:
    """The built image, as far as a test can tell: a venv, a HOME, a copy of the repo."""

    venv: Path
    home: Path
    repo: Path
    env: dict[str, str]

    def start(self, *command: str, log: Path) -> subprocess.Popen[bytes]:
        """``binder/start <command>``, in a process group of its own (the edge it starts in
        the background goes with it)."""
        return subprocess.Popen(
            [str(self.repo / "binder/start"), *command],
            cwd=self.repo,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``binder/start``'s command and the edge it left running."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(1)  # the edge's own shutdown
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(cmd: list[str], **kw: object) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="module")
def binder(tmp_path_factory: pytest.TempPathFactory) -> BinderEnv:
    root = tmp_path_factory.mktemp("binder")
    venv, home, repo = root / "venv", root / "home", root / "repo"
    home.mkdir()
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin/pip"), "install", "-q", "-r", "binder/requirements.txt"], cwd=REPO)
    # what the user's server sees: the repository, without the build's leftovers
    shutil.copytree(REPO / "binder", repo / "binder")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASK_", "JUPYTER_", "INTERLINK_", "KUBECONFIG", "VIRTUAL_ENV"))
    }
    env.update(
        HOME=str(home),
        PATH=f"{venv / 'bin'}:{env['PATH']}",
        INTERLINK_BINDER_PORT=str(free_port()),
    )
    run([str(repo / "binder/postBuild")], cwd=repo, env=env)
    return BinderEnv(venv, home, repo, env)


def outputs(cell: dict[str, object]) -> str:
    texts = []
    for out in cell.get("outputs") or []:  # type: ignore[attr-defined]
        texts.append("".join(out.get("text", "")))
        texts.append("".join((out.get("data") or {}).get("text/plain", "")))
    return "\n".join(texts)


def test_the_demo_notebook_runs_to_the_end_under_binder_start(
    binder: BinderEnv, tmp_path: Path
) -> None:
    config = (binder.home / ".config/dask/interlink.yaml").read_text()
    assert "mode: direct" in config
    script = tmp_path / "run_notebook.py"
    script.write_text(RUN_NOTEBOOK)
    executed = tmp_path / "demo.ipynb"
    notebook = binder.repo / "binder/demo.ipynb"
    python = str(binder.venv / "bin/python")
    proc = binder.start(
        python, str(script), str(notebook), str(executed), str(binder.repo), log=tmp_path / "log"
    )
    try:
        rc = proc.wait(900)
    finally:
        stop_group(proc)
    assert rc == 0, (tmp_path / "log").read_text()[-5000:]
    cells = [c for c in json.loads(executed.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in cells)
    table = outputs(cells[1])
    assert table.count("connected") >= 2, table
    mean = re.search(r"mean of x \+ x\.T: (\d\.\d+)", outputs(cells[2]))
    assert mean is not None and 0.99 < float(mean.group(1)) < 1.01, outputs(cells[2])
    assert "'connected': 2" in outputs(cells[3]), outputs(cells[3])
    assert outputs(cells[4]).strip() == "closed"


@pytest.fixture
def lab(binder: BinderEnv, tmp_path: Path) -> Iterator[str]:
    """``binder/start jupyter lab`` as Binder runs it; its URL."""
    port = free_port()
    log = tmp_path / "lab.log"
    proc = binder.start(
        "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={binder.repo}", log=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/status?token={TOKEN}").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)


def run_cells(page: Page, n: int) -> None:
    """Run the selected cell and the ``n - 1`` after it (Shift+Enter each)."""
    for _ in range(n):
        page.keyboard.press("Shift+Enter")


def test_the_demo_cluster_shows_in_the_sidebar(browser: Browser, lab: str) -> None:
    page = open_lab_sidebar(browser, f"{lab}/lab/tree/binder/demo.ipynb?token={TOKEN}&reset", WAIT)
    expect(page.locator('[data-testid^="interlink-edge-"]')).to_contain_text("127.0.0.1")
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=WAIT)
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    run_cells(page, 4)  # intro, the cluster, the text, scale to 2
    card = page.get_by_test_id("interlink-cluster-binder-demo")
    expect(card).to_be_visible(timeout=WAIT)
    expect(page.get_by_test_id("interlink-count-binder-demo-connected")).to_have_text(
        "2", timeout=WAIT
    )
    # the cluster's widget in the notebook follows the workers too (live, not a snapshot)
    widget = page.locator(".jp-NotebookPanel .jp-CodeCell").first.locator(".jp-OutputArea")
    expect(widget).to_contain_text("connected: 2", timeout=WAIT)
    shot(page, "binder-demo-and-sidebar")
    run_cells(page, 6)  # compute, the tables, close
    close = page.locator(".jp-NotebookPanel .jp-CodeCell").nth(4)  # the demo's last code cell
    expect(close.locator(".jp-OutputArea")).to_contain_text("closed", timeout=WAIT)
    expect(card).to_have_count(0, timeout=WAIT)
    page.close()
