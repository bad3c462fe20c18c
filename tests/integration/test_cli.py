"""The commands a user types: interlink demo, up and doctor, run as real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.world import INTERLINK, Issuer, free_port, start_plugin, stop

pytestmark = pytest.mark.integration


def assert_in_order(text: str, *phrases: str) -> None:
    """Each phrase appears in ``text``, in this order."""
    where = [text.index(p) for p in phrases]
    assert where == sorted(where), text


def interlink(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INTERLINK, *args], capture_output=True, text=True, timeout=timeout)


def test_demo_runs_a_dask_cluster_of_four_workers_and_tears_it_down(tmp_path: Path) -> None:
    out = interlink("demo", "--state-dir", str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert_in_order(
        text,
        "edge ready",
        "asked for 4 workers",
        "workers: 4 connected",
        "result: ",
        "worker state table:",
        "cluster closed",
        "edge stopped",
    )
    primes = sum(all(k % d for d in range(2, int(k**0.5) + 1)) for k in range(2, 400_000))
    assert f"result: {primes} primes below 400,000 (16 tasks)" in text  # the computation ran
    table = text[text.index("worker state table:") :]
    assert table.count(" connected") == 4, table
    assert not list((tmp_path / "edge" / "plugin" / "pods").glob("*"))  # no pod left behind
    for log in (tmp_path / "edge" / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()


def test_pod_demo_shows_the_pod_lifecycle_and_its_logs(tmp_path: Path) -> None:
    out = interlink("demo", "--pod", "--state-dir", str(tmp_path), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert_in_order(
        text,
        "edge ready",
        "submitted pod",
        "pod is Running",
        "pod is Succeeded",
        "logs of container compute",
        "pod deleted",
        "edge stopped",
    )
    assert "staging input for interlink-demo" in text  # env from the downward API
    sieve = bytearray([1]) * 30000
    sieve[0:2] = b"\x00\x00"
    for i in range(2, 174):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    expected = sum(i for i, is_prime in enumerate(sieve) if is_prime)
    assert f"step 3/3: sum of primes below 30000: {expected}" in text  # the computation ran
    # nothing left running: the plugin and API server were stopped
    for log in (tmp_path / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()


def test_up_then_doctor_then_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*INTERLINK, "up", "--port", str(port), "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C" in line or not line:
                break
        text = "".join(lines)
        assert f"API server : http://127.0.0.1:{port}" in text, text
        token = (tmp_path / "token").read_text()
        ok = interlink(
            "doctor",
            "--url",
            f"http://127.0.0.1:{port}",
            "--token",
            token,
            "--config",
            str(tmp_path / "api.yaml"),
        )
        assert ok.returncode == 0, ok.stdout
        assert "token accepted" in ok.stdout and "plugin answers ping" in ok.stdout
        bad = interlink("doctor", "--url", f"http://127.0.0.1:{port}", "--token", "wrong-token-1")
        assert bad.returncode == 1
        assert "refuses the token" in bad.stdout and "fix:" in bad.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        # both services are gone: the port is free again
        free = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import socket; s=socket.socket(); s.bind(('127.0.0.1', {port}))",
            ]
        )
        assert free.returncode == 0
    finally:
        stop(proc)


def test_doctor_names_a_missing_plugin_socket(tmp_path: Path) -> None:
    cfg = tmp_path / "api.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "plugin": {"url": f"unix://{tmp_path}/nope.sock"},
                "auth": {"insecure_dev_token": "dev-token-123"},
            }
        )
    )
    out = interlink("doctor", "--config", str(cfg))
    assert out.returncode == 1
    assert f"plugin socket {tmp_path}/nope.sock does not exist" in out.stdout
    assert "interlink plugin" in out.stdout  # says how to fix it


def test_doctor_checks_the_issuer(tmp_path: Path, issuer: Issuer) -> None:
    plugin = start_plugin(tmp_path / "plugin")
    try:
        cfg = tmp_path / "api.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "plugin": {"url": plugin.url},
                    "auth": {"oidc": issuer.oidc_config()},
                }
            )
        )
        out = interlink("doctor", "--config", str(cfg))
        assert out.returncode == 0, out.stdout
        assert f"OIDC issuer {issuer.url} publishes 1 key(s)" in out.stdout
        # the same without trusting the issuer's CA: said plainly
        conf = yaml.safe_load(cfg.read_text())
        del conf["auth"]["oidc"]["ca_file"]
        cfg.write_text(yaml.safe_dump(conf))
        out = interlink("doctor", "--config", str(cfg))
        assert out.returncode == 1
        assert "cannot read the OIDC issuer's keys" in out.stdout
    finally:
        plugin.stop()


def test_plugin_with_bad_config_says_which_key(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("state_dri: /tmp/x\n")
    out = interlink("plugin", "local", "--config", str(cfg))
    assert out.returncode == 2
    assert "state_dri: unknown key" in out.stderr


def test_unknown_backend_lists_the_installed_ones() -> None:
    out = interlink("plugin", "nosuch")
    assert out.returncode == 2
    assert "unknown plugin backend 'nosuch'" in out.stderr and "local" in out.stderr
