"""The per-pod runner: ``python -m interlink_plugins.local.runner <pod_dir>``.

It reads ``<pod_dir>/spec.json`` (written by the plugin), runs the init containers one after the
other (stopping at the first that fails), then all containers in parallel, each in its own
session / process group, and records everything as files so that the plugin can come and go:

* ``runner.pid`` — this process;
* ``containers/<name>/0.log`` — the output in the CRI log format (``P`` lines every 16 KiB when
  a line has no newline);
* ``containers/<name>/pid`` and ``started`` — the process group and start time;
* ``containers/<name>/exit`` — ``{"exitCode", "finishedAt", "reason", "signal"?, "message"?}``,
  written (atomically) only once every log line of the container is on disk;
* ``runner.done`` — ``{"finishedAt", "reason"}`` when the runner ends;
* ``events`` — one byte appended after each of the files above is written, so the plugin can
  tell from its size alone (one ``stat``) whether anything changed since its last look.

On SIGTERM (pod deletion) it sends SIGTERM to every running container, waits the grace period
(``<pod_dir>/grace`` if the plugin wrote one, else the spec's), then SIGKILLs what is left. It
does the same when its pod directory disappears (the plugin's state was wiped): a pod nobody can
see or delete any more is not left running.
Exit codes follow the Kubernetes convention (128 + signal: 143 for SIGTERM, 137 for SIGKILL).

The runner uses the standard library only (a ``selectors`` loop, no asyncio, no pydantic) so that
one runner per pod stays around 12 MB of RSS.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from interlink_core.logs import format_line

PARTIAL_LIMIT = 16 * 1024
START_ERROR_CODE = 128
PIPE_LINGER = 2.0
ORPHAN_CHECK = 5.0
"""Seconds between checks that the pod directory still exists: with nothing else due, a runner
sleeps this long (child exits, output and signals wake it at once), so 1,000 idle pods cost
200 wake-ups a second, not 2,000."""


def write_atomic(path: Path, content: str, events: Path) -> None:
    """Write ``content`` to ``path`` so readers see the whole file or none of it, then append
    a byte to the pod's ``events`` file (after the write: whoever sees the new size also sees
    the file)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(content)
        os.replace(tmp, path)
        with open(events, "ab") as fh:
            fh.write(b".")
    except FileNotFoundError:  # the pod directory was removed: nobody will read it
        pass


class Container:
    """One container process with its log writer."""

    def __init__(self, pod_dir: Path, spec: dict[str, Any]) -> None:
        self.name: str = spec["name"]
        self.spec = spec
        self.dir = pod_dir / "containers" / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.events = pod_dir / "events"
        self.proc: subprocess.Popen[bytes] | None = None
        self.buffers: dict[int, tuple[str, bytearray]] = {}
        self.pipes: dict[int, IO[bytes]] = {}
        self.returncode: int | None = None
        self.exit_code: int | None = None
        self.log_fd = -1
        self.killed = False
        self.exited_at = 0.0

    # -- lifecycle

    def start(self, sel: selectors.BaseSelector) -> bool:
        """Start the process; on failure write a StartError exit and return False."""
        self.log_fd = os.open(self.dir / "0.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        cwd = self.spec.get("cwd") or None
        if cwd:
            os.makedirs(cwd, exist_ok=True)
        now = time.time()
        try:
            self.proc = subprocess.Popen(
                self.spec["argv"],
                env=self.spec["env"],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            msg = f"cannot start {self.spec['argv'][0]!r}: {exc.strerror or exc}"
            os.write(self.log_fd, format_line(now, "stderr", msg.encode()))
            write_atomic(self.dir / "started", repr(now), self.events)
            self.finish(START_ERROR_CODE, "StartError", message=msg)
            return False
        write_atomic(self.dir / "pid", str(self.proc.pid), self.events)
        write_atomic(self.dir / "started", repr(now), self.events)
        for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self.buffers[fd] = (stream, bytearray())
            self.pipes[fd] = pipe
            sel.register(fd, selectors.EVENT_READ, self)
        return True

    @property
    def running(self) -> bool:
        """True while the process or its output pipes are still open."""
        return self.proc is not None and self.exit_code is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the container's process group."""
        if self.proc is not None and self.exit_code is None:
            if sig == signal.SIGKILL:
                self.killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    # -- output

    def feed(self, fd: int, sel: selectors.BaseSelector) -> None:
        """Read what the pipe has and log it; close the pipe at EOF."""
        stream, buf = self.buffers[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        now = time.time()
        if not data:
            self._close(fd, sel, now)
            return
        buf += data
        out = []
        while True:
            nl = buf.find(b"\n")
            if nl >= 0 and nl <= PARTIAL_LIMIT:
                out.append(format_line(now, stream, bytes(buf[:nl])))
                del buf[: nl + 1]
            elif len(buf) >= PARTIAL_LIMIT:
                out.append(format_line(now, stream, bytes(buf[:PARTIAL_LIMIT]), partial=True))
                del buf[:PARTIAL_LIMIT]
            else:
                break
        if out:
            self._write(b"".join(out))

    def _close(self, fd: int, sel: selectors.BaseSelector, now: float) -> None:
        stream, buf = self.buffers.pop(fd)
        if buf:
            self._write(format_line(now, stream, bytes(buf)))
        sel.unregister(fd)
        self.pipes.pop(fd).close()

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.log_fd, data)

    def check(self, sel: selectors.BaseSelector) -> bool:
        """Reap the process; once it and its pipes are done, write the exit file. Returns True
        when the container has just finished."""
        if self.proc is None or self.exit_code is not None:
            return False
        if self.returncode is None:
            rc = self.proc.poll()
            if rc is None:
                return False
            self.returncode = rc
            self.exited_at = time.monotonic()
            # like a container runtime: when the main process ends, the rest of it goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.buffers:
            # a process that left the group (setsid) may still hold the pipes: stop waiting
            if time.monotonic() - self.exited_at < PIPE_LINGER:
                return False
            for fd in list(self.buffers):
                self._close(fd, sel, time.time())
        rc = self.returncode
        if rc >= 0:
            self.finish(rc, "Completed" if rc == 0 else "Error")
        else:
            self.finish(128 - rc, "Killed" if self.killed else "Error", sig=-rc)
        return True

    def due(self) -> float | None:
        """When :meth:`check` must run with no event to wake it (a pipe left open by a process
        that outlived the container's main process), as a ``time.monotonic()`` value."""
        if self.returncode is not None and self.exit_code is None and self.buffers:
            return self.exited_at + PIPE_LINGER
        return None

    def finish(self, code: int, reason: str, sig: int | None = None, message: str = "") -> None:
        """Record the exit (after the last log line)."""
        self.exit_code = code
        info: dict[str, Any] = {"exitCode": code, "finishedAt": time.time(), "reason": reason}
        if sig is not None:
            info["signal"] = sig
            info["message"] = f"terminated by signal {signal.Signals(sig).name}"
        if message:
            info["message"] = message
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1
        write_atomic(self.dir / "exit", json.dumps(info), self.events)


class Runner:
    """Runs the containers of one pod (see the module docstring)."""

    def __init__(self, pod_dir: Path) -> None:
        self.pod_dir = pod_dir
        self.spec: dict[str, Any] = json.loads((pod_dir / "spec.json").read_text())
        self.sel = selectors.DefaultSelector()
        self.stop_requested = False
        self.kill_at: float | None = None

    def grace(self) -> float:
        """Grace period in seconds: the plugin's override file, else the spec's."""
        try:
            return float((self.pod_dir / "grace").read_text().strip())
        except (OSError, ValueError):
            return float(self.spec.get("grace", 30))

    def run(self) -> int:
        """Run the pod to its end; return the runner's exit status."""
        write_atomic(self.pod_dir / "runner.pid", str(os.getpid()), self.pod_dir / "events")
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.sel.register(rfd, selectors.EVENT_READ, None)

        reason = "Completed"
        for spec in self.spec.get("init", []):
            if self.stop_requested:
                reason = "Terminated"
                break
            c = Container(self.pod_dir, spec)
            if c.start(self.sel):
                self._loop([c])
            if c.exit_code != 0:
                reason = "Terminated" if self.stop_requested else "InitFailed"
                break
        else:
            if self.stop_requested:
                reason = "Terminated"
            else:
                mains = [Container(self.pod_dir, s) for s in self.spec.get("containers", [])]
                started = [c for c in mains if c.start(self.sel)]
                self._loop(started)
                if self.stop_requested:
                    reason = "Terminated"
        info = {"finishedAt": time.time(), "reason": reason}
        write_atomic(self.pod_dir / "runner.done", json.dumps(info), self.pod_dir / "events")
        return 0

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def _loop(self, containers: list[Container]) -> None:
        stopping = False
        while any(c.running for c in containers):
            if not self.stop_requested and not os.path.isdir(self.pod_dir):
                self.stop_requested = True  # orphaned: the plugin's state was wiped
            now = time.monotonic()
            due = [d for c in containers if (d := c.due()) is not None]
            if self.kill_at is not None:
                due.append(self.kill_at)
            wake = min([now + ORPHAN_CHECK, *due])
            for key, _ in self.sel.select(timeout=max(0.0, wake - now)):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        while os.read(key.fd, 512):
                            pass
                else:
                    key.data.feed(key.fd, self.sel)
            for c in containers:
                c.check(self.sel)
            if self.stop_requested and not stopping:
                stopping = True
                self.kill_at = time.monotonic() + self.grace()
                for c in containers:
                    c.signal(signal.SIGTERM)
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                for c in containers:
                    c.signal(signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the pod in the directory given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m interlink_plugins.local.runner <pod_dir>", file=sys.stderr)
        return 2
    return Runner(Path(args[0])).run()


if __name__ == "__main__":
    sys.exit(main())
