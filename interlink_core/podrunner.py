"""The pod runner: ``python -m interlink_core.podrunner <pod_dir>`` runs one pod's containers
the way a kubelet would, and records everything as files so that its plugin can come and go.

It reads ``<pod_dir>/spec.json`` (written by the plugin), runs the init containers one after the
other (stopping at the first that fails for good), then all containers in parallel, each in its
own session / process group, and writes:

* ``runner.pid`` — this process;
* ``containers/<name>/0.log`` — the output in the CRI log format (``P`` lines every 16 KiB when
  a line has no newline), one file across restarts;
* ``containers/<name>/pid`` and ``started`` — the current instance's process group and start
  time (written once its postStart hook succeeded);
* ``containers/<name>/status`` — for supervised containers (probes, hooks, or a restart
  policy other than ``Never``): ``{"restartCount", "started", "ready", "startedAt"?,
  "waiting"?, "lastState"?}`` as a kubelet would report them, rewritten when they change;
* ``containers/<name>/exit`` — ``{"exitCode", "finishedAt", "reason", "signal"?, "message"?}``,
  written (atomically) once the container will not run again and its last log line is on disk;
* ``kube-events`` — JSON lines ``{"seq", "at", "type", "reason", "message", "container"}``:
  the Events a kubelet would record (``Unhealthy``, ``Killing``, ``BackOff``,
  ``FailedPostStartHook``, ``FailedPreStopHook``);
* ``runner.done`` — ``{"finishedAt", "reason"}`` when the runner ends;
* ``events`` — one byte appended after each of the files above is written, so the plugin can
  tell from its size alone (one ``stat``) whether anything changed since its last look.

On SIGTERM (pod deletion) it runs each running container's preStop hook, then sends it SIGTERM,
and SIGKILLs what is left when the grace period (``<pod_dir>/grace`` if the plugin wrote one,
else the spec's) is over. It does the same when its pod directory disappears (the plugin's
state was wiped): a pod nobody can see or delete any more is not left running.
Exit codes follow the Kubernetes convention (128 + signal: 143 for SIGTERM, 137 for SIGKILL).

The runner uses the standard library only (a ``selectors`` loop; probes and hooks run in
short-lived threads) so that one runner per pod stays small, and so that batch jobs can run it
with the compute node's ``python3`` from a copy of this package's stdlib-only modules.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from interlink_core.probes import (
    PROBE_KINDS,
    Backoff,
    ProbeState,
    Target,
    needs_supervision,
    run_handler,
    should_restart,
)

PARTIAL_LIMIT = 16 * 1024
START_ERROR_CODE = 128
PIPE_LINGER = 2.0
ORPHAN_CHECK = 5.0
"""Seconds between checks that the pod directory still exists: with nothing else due, a runner
sleeps this long (child exits, output and signals wake it at once), so 1,000 idle pods cost
200 wake-ups a second, not 2,000."""
STANDALONE_MODULES = ("__init__.py", "probes.py", "podrunner.py")
"""The files of ``interlink_core`` a batch job needs to run this module with plain python3
(3.8 or newer: compute nodes' system Python is often older than this project's)."""


def format_line(t: float, stream: str, text: bytes, partial: bool = False) -> bytes:
    """One CRI log line (``text`` without its newline), as :mod:`interlink_core.logs` reads
    them (written here again: that module needs Python 3.11)."""
    dt = datetime.fromtimestamp(t, timezone.utc)  # noqa: UP017 (datetime.UTC is 3.11+)
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}000Z"
    return f"{stamp} {stream} {'P' if partial else 'F'} ".encode() + text + b"\n"


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


class EventLog:
    """The pod's ``kube-events`` file."""

    def __init__(self, pod_dir: Path) -> None:
        self.path = pod_dir / "kube-events"
        self.events = pod_dir / "events"
        self.seq = 0
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            # Events the plugin recorded before the pod ran (e.g. what a runtime ignores)
            # keep their numbers: ours follow them
            self.seq = int(json.loads(self.path.read_text().splitlines()[-1])["seq"])

    def add(self, container: str, reason: str, message: str, warning: bool = True) -> None:
        """Record one Event."""
        self.seq += 1
        line = {
            "seq": self.seq,
            "at": time.time(),
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message,
            "container": container,
        }
        with contextlib.suppress(FileNotFoundError):
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
            with open(self.events, "ab") as fh:
                fh.write(b".")


class Inbox:
    """Results of probe and hook threads for the runner's loop, which the pipe wakes."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Container, str, int, bool, str]] = queue.SimpleQueue()
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)

    def put(self, item: tuple[Container, str, int, bool, str]) -> None:
        """Hand a result to the loop and wake it."""
        self.queue.put(item)
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\0")

    def drain(self) -> list[tuple[Container, str, int, bool, str]]:
        """The results so far."""
        out = []
        while not self.queue.empty():
            out.append(self.queue.get())
        return out


class Container:
    """One container: its process with the log writer, and (when supervised) its probes,
    hooks and restarts. Results of probe and hook threads come back through ``results``."""

    def __init__(self, pod_dir: Path, spec: dict[str, Any], log: EventLog, results: Inbox) -> None:
        self.name: str = spec["name"]
        self.spec = spec
        self.dir = pod_dir / "containers" / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.events = pod_dir / "events"
        self.log = log
        self.results = results
        self.sup: dict[str, Any] = spec.get("supervision") or {"restartPolicy": "Never"}
        self.supervised = needs_supervision(self.sup)
        self.target = Target(
            exec_prefix=list(spec.get("exec_prefix") or []),
            env=spec.get("env"),
            cwd=spec.get("cwd") or None,
            host=str(spec.get("host") or "127.0.0.1"),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.buffers: dict[int, tuple[str, bytearray]] = {}
        self.pipes: dict[int, IO[bytes]] = {}
        self.returncode: int | None = None
        self.exit_code: int | None = None  # set once the container will not run again
        self.log_fd = -1
        self.killed = False
        self.exited_at = 0.0
        # supervision
        self.generation = 0
        self.backoff = Backoff()
        self.restart_at: float | None = None
        self.kill_at: float | None = None
        self.stopping = False  # a stop is under way (preStop, then SIGTERM, then SIGKILL)
        self.no_restart = False  # the pod is being deleted
        self.running_since = 0.0  # monotonic start of this instance
        self.started_wall = 0.0
        self.post_started = False
        self.probes: dict[str, ProbeState] = {}
        self.busy: set[str] = set()  # probes and hooks in flight
        self.last_state: dict[str, Any] | None = None
        self.waiting: dict[str, str] | None = {"reason": "ContainerCreating"}
        self._shown: dict[str, Any] | None = None

    # -- lifecycle

    def start(self, sel: selectors.BaseSelector) -> bool:
        """Start (or restart) the process; on failure record a StartError and return False."""
        self.log_fd = os.open(self.dir / "0.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        cwd = self.spec.get("cwd") or None
        if cwd:
            os.makedirs(cwd, exist_ok=True)
        now = time.time()
        self.generation += 1
        self.returncode = None
        self.killed = self.stopping = False
        self.restart_at = self.kill_at = None
        try:
            self.proc = subprocess.Popen(
                self.spec["argv"],
                env=self.spec.get("env"),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            self.proc = None
            msg = f"cannot start {self.spec['argv'][0]!r}: {exc.strerror or exc}"
            os.write(self.log_fd, format_line(now, "stderr", msg.encode()))
            write_atomic(self.dir / "started", repr(now), self.events)
            self.ended(START_ERROR_CODE, "StartError", message=msg)
            return False
        self.running_since, self.started_wall = time.monotonic(), now
        write_atomic(self.dir / "pid", str(self.proc.pid), self.events)
        for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self.buffers[fd] = (stream, bytearray())
            self.pipes[fd] = pipe
            sel.register(fd, selectors.EVENT_READ, self)
        self.probes = {}
        if "postStart" in self.sup:
            self.post_started = False
            self.waiting = {"reason": "ContainerCreating"}
            self._spawn("postStart", self.sup["postStart"], None)
        else:
            self._now_running()
        self.show()
        return True

    def _now_running(self) -> None:
        """The instance counts as running (its postStart hook, if any, succeeded)."""
        self.post_started = True
        self.waiting = None
        now = time.monotonic()
        specs = self.sup.get("probes") or {}
        self.probes = {k: ProbeState(k, specs[k], now) for k in PROBE_KINDS if k in specs}
        self.show()  # before ``started``: a reader never sees it running without its readiness
        write_atomic(self.dir / "started", repr(self.started_wall), self.events)

    @property
    def running(self) -> bool:
        """True from its first start until the container has ended for good."""
        return self.generation > 0 and self.exit_code is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the container's process group."""
        if self.proc is not None and self.returncode is None:
            if sig == signal.SIGKILL:
                self.killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace: float, why: str = "") -> None:
        """Stop the current instance: preStop hook (if any), then SIGTERM, SIGKILL after
        ``grace`` seconds. ``why`` (a Killing Event) is set when a probe or hook asked."""
        if self.stopping or self.returncode is not None:
            return
        self.stopping = True
        if why:
            self.log.add(self.name, "Killing", why, warning=False)
        self.kill_at = time.monotonic() + grace
        if "preStop" in self.sup and self.proc is not None:
            self._spawn("preStop", self.sup["preStop"], grace)
        else:
            self.signal(signal.SIGTERM)

    def stop_for_good(self, grace: float) -> None:
        """The pod is being deleted: stop, and never restart."""
        self.no_restart = True
        if self.returncode is None and self.proc is not None:
            self.stop(grace)
        elif self.restart_at is not None:  # in back-off: it ends with its last state
            self.restart_at = None
            self._finish_from_last()

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

    # -- the loop's calls

    def check(self, sel: selectors.BaseSelector) -> None:
        """Reap the process; once it and its pipes are done, restart it or record its end."""
        if self.proc is None or self.exit_code is not None or self.restart_at is not None:
            return
        if self.returncode is None:
            rc = self.proc.poll()
            if rc is None:
                return
            self.returncode = rc
            self.exited_at = time.monotonic()
            # like a container runtime: when the main process ends, the rest of it goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.buffers:
            # a process that left the group (setsid) may still hold the pipes: stop waiting
            if time.monotonic() - self.exited_at < PIPE_LINGER:
                return
            for fd in list(self.buffers):
                self._close(fd, sel, time.time())
        rc = self.returncode
        if rc >= 0:
            self.ended(rc, "Completed" if rc == 0 else "Error")
        else:
            self.ended(128 - rc, "Killed" if self.killed else "Error", sig=-rc)

    def tick(self, now: float, sel: selectors.BaseSelector) -> None:
        """Start due probes, restart after back-off, SIGKILL after the grace period."""
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            self.signal(signal.SIGKILL)
        if self.restart_at is not None and now >= self.restart_at:
            self.start(sel)
            return
        for kind, probe in self._probing():
            if probe.due(now):
                self._spawn(kind, probe.spec, float(probe.spec["timeoutSeconds"]))

    def _probing(self) -> list[tuple[str, ProbeState]]:
        """The probes that may run now: none while stopping or before postStart succeeded;
        the startup probe until it succeeds, then the others; none already in flight."""
        if self.stopping or self.returncode is not None or not self.post_started:
            return []
        startup = self.probes.get("startup")
        gate = "startup" if startup is not None and not startup.verdict else None
        return [
            (k, p)
            for k, p in self.probes.items()
            if k not in self.busy and (gate is None or k == gate)
        ]

    def due(self) -> float | None:
        """When :meth:`tick` or :meth:`check` must run with no event to wake them, as a
        ``time.monotonic()`` value."""
        times = [t for t in (self.restart_at, self.kill_at) if t is not None]
        if self.returncode is not None and self.exit_code is None and self.buffers:
            times.append(self.exited_at + PIPE_LINGER)
        times += [p.next_at for _, p in self._probing()]
        return min(times) if times else None

    # -- probes and hooks

    def _spawn(self, what: str, handler: dict[str, Any], timeout: float | None) -> None:
        """Run a probe or hook in a thread; its result comes back through ``results``."""
        self.busy.add(what)
        gen = self.generation

        def work() -> None:
            ok, said = run_handler(handler, self.target, timeout)
            self.results.put((self, what, gen, ok, said))

        threading.Thread(target=work, name=f"{self.name}-{what}", daemon=True).start()

    def result(self, what: str, generation: int, ok: bool, said: str, grace: float) -> None:
        """A probe or hook finished (results of an earlier instance are dropped)."""
        self.busy.discard(what)
        if generation != self.generation:
            return
        if what == "preStop":
            if not ok:
                self.log.add(self.name, "FailedPreStopHook", f"PreStop hook failed: {said}")
            self.signal(signal.SIGTERM)
        elif what == "postStart":
            if self.returncode is not None or self.stopping:
                return
            if ok:
                self._now_running()
            else:
                self.log.add(self.name, "FailedPostStartHook", f"PostStart hook failed: {said}")
                self.stop(grace)
        elif not self.stopping and self.returncode is None:
            self._probed(what, ok, said, grace)
        self.show()

    def _probed(self, kind: str, ok: bool, said: str, grace: float) -> None:
        probe = self.probes[kind]
        if not ok:
            self.log.add(self.name, "Unhealthy", f"{kind.capitalize()} probe failed: {said}")
        if probe.record(ok) and not ok and kind in ("startup", "liveness"):
            then = ", will be restarted" if self._restarts(1) else ""
            self.stop(grace, f"Container {self.name} failed {kind} probe{then}")

    # -- ends and restarts

    def _restarts(self, code: int) -> bool:
        return not self.no_restart and should_restart(self.sup["restartPolicy"], code)

    def ended(self, code: int, reason: str, sig: int | None = None, message: str = "") -> None:
        """One instance ended: restart it after its back-off, or record the end for good."""
        info: dict[str, Any] = {"exitCode": code, "finishedAt": time.time(), "reason": reason}
        if sig is not None:
            info["signal"] = sig
            info["message"] = f"terminated by signal {signal.Signals(sig).name}"
        if message:
            info["message"] = message
        self.busy.clear()
        self.probes = {}
        self.stopping = False
        self.kill_at = None
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1
        if not self._restarts(code):
            self.finish(info)
            return
        self.last_state = {"terminated": self._terminated(info)}
        delay = self.backoff.delay(time.monotonic() - self.running_since)
        self.restart_at = time.monotonic() + delay
        if delay > 0:
            self.waiting = {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={self.name}",
            }
            self.log.add(
                self.name, "BackOff", f"Back-off {delay:g}s restarting failed container {self.name}"
            )
        else:
            self.waiting = {"reason": "ContainerCreating"}
        self.show()

    def _terminated(self, info: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in info.items() if k in ("exitCode", "reason", "signal", "message")}
        out["startedAt"], out["finishedAt"] = self.started_wall, info["finishedAt"]
        return out

    def _finish_from_last(self) -> None:
        last = dict((self.last_state or {}).get("terminated") or {})
        last.pop("startedAt", None)
        self.finish(last or {"exitCode": 0, "finishedAt": time.time(), "reason": "Completed"})

    def finish(self, info: dict[str, Any]) -> None:
        """Record the end for good (after the last log line)."""
        self.exit_code = int(info["exitCode"])
        self.restart_at = None
        self.show()
        write_atomic(self.dir / "exit", json.dumps(info), self.events)

    # -- what a kubelet would report

    def show(self) -> None:
        """Rewrite the ``status`` file of a supervised container if its view changed."""
        if not self.supervised:
            return
        ended = self.exit_code is not None or self.returncode is not None
        running = not ended and self.post_started and self.waiting is None
        startup = self.probes.get("startup")
        started = running and (startup is None or bool(startup.verdict))
        readiness = self.probes.get("readiness")
        view: dict[str, Any] = {
            "restartCount": self.generation - 1,
            "started": started,
            "ready": started and (readiness is None or bool(readiness.verdict)),
        }
        if running:
            view["startedAt"] = self.started_wall
        elif self.waiting is not None and self.exit_code is None:
            view["waiting"] = self.waiting
        if self.last_state is not None:
            view["lastState"] = self.last_state
        if view != self._shown:
            self._shown = view
            write_atomic(self.dir / "status", json.dumps(view), self.events)


class Runner:
    """Runs the containers of one pod (see the module docstring)."""

    def __init__(self, pod_dir: Path) -> None:
        self.pod_dir = pod_dir
        self.spec: dict[str, Any] = json.loads((pod_dir / "spec.json").read_text())
        self.sel = selectors.DefaultSelector()
        self.stop_requested = False
        self.log = EventLog(pod_dir)
        self.inbox = Inbox()

    def grace(self) -> float:
        """Grace period in seconds: the plugin's override file, else the spec's."""
        try:
            return float((self.pod_dir / "grace").read_text().strip())
        except (OSError, ValueError):
            return float(self.spec.get("grace", 30))

    def _container(self, spec: dict[str, Any]) -> Container:
        return Container(self.pod_dir, spec, self.log, self.inbox)

    def run(self) -> int:
        """Run the pod to its end; return 0, or 1 if a container failed."""
        write_atomic(self.pod_dir / "runner.pid", str(os.getpid()), self.pod_dir / "events")
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        self.sel.register(self.inbox.read_fd, selectors.EVENT_READ, None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.sel.register(rfd, selectors.EVENT_READ, None)

        reason, failed = "Completed", False
        for spec in self.spec.get("init", []):
            if self.stop_requested:
                reason = "Terminated"
                break
            c = self._container(spec)
            if c.start(self.sel) or c.running:
                self._loop([c])
            if c.exit_code != 0:
                reason = "Terminated" if self.stop_requested else "InitFailed"
                failed = True
                break
        else:
            if self.stop_requested:
                reason = "Terminated"
            else:
                mains = [self._container(s) for s in self.spec.get("containers", [])]
                for c in mains:
                    c.start(self.sel)
                self._loop([c for c in mains if c.running])
                failed = any(c.exit_code for c in mains)
                if self.stop_requested:
                    reason = "Terminated"
        self._cleanup()
        info = {"finishedAt": time.time(), "reason": reason}
        write_atomic(self.pod_dir / "runner.done", json.dumps(info), self.pod_dir / "events")
        return 1 if failed else 0

    def _cleanup(self) -> None:
        """Commands the plugin asked to run at the end (e.g. removing runtime containers)."""
        for argv in self.spec.get("cleanup", []):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def _loop(self, containers: list[Container]) -> None:
        stopping = False
        while any(c.running for c in containers):
            if not self.stop_requested and not os.path.isdir(self.pod_dir):
                self.stop_requested = True  # orphaned: the plugin's state was wiped
            now = time.monotonic()
            due = [d for c in containers if (d := c.due()) is not None]
            wake = min([now + ORPHAN_CHECK, *due])
            for key, _ in self.sel.select(timeout=max(0.0, wake - now)):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        while os.read(key.fd, 512):
                            pass
                else:
                    key.data.feed(key.fd, self.sel)
            for c, what, gen, ok, said in self.inbox.drain():
                c.result(what, gen, ok, said, self.grace())
            if self.stop_requested and not stopping:
                stopping = True
                grace = self.grace()
                for c in containers:
                    c.stop_for_good(grace)
            now = time.monotonic()
            for c in containers:
                c.check(self.sel)
                if c.running:
                    c.tick(now, self.sel)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the pod in the directory given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m interlink_core.podrunner <pod_dir>", file=sys.stderr)
        return 2
    return Runner(Path(args[0])).run()


if __name__ == "__main__":
    sys.exit(main())
