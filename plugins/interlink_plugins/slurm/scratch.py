"""``shared_filesystem: false``: jobs that carry their files and report back through SLURM.

Without a filesystem shared between the plugin and the compute nodes, a job is self-contained:

* **Files in.** The pod's volume files (and the runtime's env files) are packed as a gzip'd tar
  archive, base64-encoded into the batch script as a quoted heredoc, and unpacked into a fresh
  private directory under ``scratch_dir`` on the node (removed at the end of the job).
* **States out.** After every container start and end the job sets its own SLURM Comment
  (``scontrol update JobId=$SLURM_JOB_ID Comment=...``) to a compact encoding of all container
  states (:func:`encode_comment` / :func:`decode_comment`); the plugin reads it with ``%k`` in
  its one ``squeue`` per cycle, and from ``sacct`` (``Comment``) for jobs that left the queue.
* **Logs out.** Each container's CRI log lines also go to the job's ``--output`` file in
  ``log_dir``, one record per line: ``@il:<container> <CRI line>``; a line longer than
  :data:`PIECE` bytes is sent as ``@il+<container> <piece>`` records followed by the final
  ``@il:`` one. :class:`LogDemux` splits that file back into per-container CRI log files in the
  plugin's own pod directory, where the shared-mode log code serves them.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import shlex
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from interlink_core.errors import BadRequest
from interlink_core.jobfiles import rfc3339
from interlink_core.models import JSON
from interlink_core.podspec import Mount

from .config import SlurmConfig

COMMENT_VERSION = "il1"
COMMENT_MAX = 1024
"""Longest job Comment slurmctld accepts (measured on SLURM 22.05: 1,025 characters are refused
with "Pathname of a file, directory or other parameter too long")."""
_ENTRY_MAX = len("99999999,99999999,255;")  # started, finished (s after T0, ~3 years), code
_HEADER_MAX = len(f"{COMMENT_VERSION}:9999999999:")
MAX_CONTAINERS = (COMMENT_MAX - _HEADER_MAX) // _ENTRY_MAX
"""Most containers (init included) whose states always fit into one Comment."""
PIECE = 2048
"""Longest piece of a log record written at once (one ``write``, so parallel containers never
interleave inside a record)."""
PAYLOAD_END = "IL_PAYLOAD_END"  # not in the base64 alphabet: cannot occur inside the payload


# --- container states in the job Comment --------------------------------------------------------


@dataclass(frozen=True)
class ContainerReport:
    """What the job reported about one container (unix times, whole seconds)."""

    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None


def encode_comment(t0: int, reports: list[ContainerReport]) -> str:
    """The Comment for these containers (in init-then-main order): ``il1:<T0>:<c>;<c>;...``
    where ``<c>`` is empty (not started), ``S`` (started S seconds after T0) or ``S,F,CODE``
    (finished F seconds after T0 with exit code CODE). The job script writes the same."""
    entries = []
    for r in reports:
        if r.started is None:
            entries.append("")
        elif r.finished is None or r.exit_code is None:
            entries.append(str(int(r.started) - t0))
        else:
            entries.append(f"{int(r.started) - t0},{int(r.finished) - t0},{r.exit_code}")
    return f"{COMMENT_VERSION}:{t0}:" + ";".join(entries)


def decode_comment(text: str, names: list[str]) -> dict[str, ContainerReport]:
    """Container name → report from a job Comment (names in init-then-main order). Anything
    that is not a well-formed entry is ignored (the comment is the job's own to write)."""
    version, _, rest = text.strip().partition(":")
    t0_text, _, body = rest.partition(":")
    if version != COMMENT_VERSION or not t0_text.isdigit():
        return {}
    t0 = int(t0_text)
    out: dict[str, ContainerReport] = {}
    for name, entry in zip(names, body.split(";"), strict=False):
        try:
            nums = [int(p) for p in entry.split(",")] if entry else []
        except ValueError:
            continue
        if len(nums) == 1:
            out[name] = ContainerReport(started=float(t0 + nums[0]))
        elif len(nums) == 3:
            out[name] = ContainerReport(float(t0 + nums[0]), float(t0 + nums[1]), nums[2])
    return out


def reported_state(
    report: ContainerReport | None, container_id: str
) -> tuple[float | None, JSON | None]:
    """``(started, terminated)`` of a container from the job's report, as
    ``container_files`` gives them from files."""
    if report is None:
        return None, None
    if report.exit_code is None or report.finished is None:
        return report.started, None
    started = report.started if report.started is not None else report.finished
    return started, {
        "exitCode": report.exit_code,
        "reason": "Completed" if report.exit_code == 0 else "Error",
        "startedAt": rfc3339(started),
        "finishedAt": rfc3339(report.finished),
        "containerID": container_id,
    }


def check_container_count(count: int) -> None:
    """Refuse pods whose container states may not fit into one job Comment."""
    if count > MAX_CONTAINERS:
        raise BadRequest(
            f"spec.containers: this pod has {count} containers (init containers included); "
            f"without a shared filesystem a SLURM job reports at most {MAX_CONTAINERS} through "
            f"its {COMMENT_MAX}-character Comment. Split the pod, or ask the site admin for "
            "shared_filesystem: true"
        )


# --- job directory: placeholder paths and the payload -------------------------------------------


@dataclass(frozen=True)
class ScratchDir:
    """The job's directory as the script names it: a unique placeholder path that the quoting
    turns into ``"$IL_DIR"`` (the directory ``mktemp`` makes on the node at run time)."""

    path: PurePosixPath

    @classmethod
    def new(cls, uid: str) -> ScratchDir:
        """A placeholder ending in the pod's UID (so ``path.name`` names the pod, as the
        shared-mode directory does)."""
        return cls(PurePosixPath(f"/il-job-dir-{secrets.token_hex(12)}") / uid)

    def quote(self, word: str) -> str:
        """``word`` as one shell word, every occurrence of the placeholder expanding to the
        job's directory and everything else quoted literally."""
        token = str(self.path)
        if token not in word:
            return shlex.quote(word)
        return '"$IL_DIR"'.join(shlex.quote(part) if part else "" for part in word.split(token))

    def relocate(self, mounts: list[Mount], stage: Path) -> list[Mount]:
        """Mounts whose sources lie in the plugin-side ``stage`` directory, pointed at the same
        place inside the job's directory (host paths stay as they are)."""
        out = []
        for m in mounts:
            try:
                rel = m.source.relative_to(stage)
            except ValueError:
                out.append(m)
                continue
            out.append(Mount(m.mount_path, Path(str(self.path / rel)), m.read_only))
        return out


def quoter(job_dir: ScratchDir | None) -> Callable[[str], str]:
    """The shell quoting of a script: plain :func:`shlex.quote` with a shared filesystem."""
    return job_dir.quote if job_dir is not None else shlex.quote


def pack(stage: Path) -> bytes:
    """The staged job directory as a gzip'd tar archive: directories and regular files only,
    relative names, modes kept, owned by whoever unpacks it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(stage):
            dirnames.sort()
            for name in [*sorted(dirnames), *sorted(filenames)]:
                path = Path(dirpath) / name
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(stage)))
                if not (info.isdir() or info.isreg()):
                    raise BadRequest(f"spec.volumes: {info.name!r} is not a file or directory")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def volume_sizes(volumes_dir: Path) -> dict[str, int]:
    """Bytes of files per volume (for the message when a pod's files are too large)."""
    sizes: dict[str, int] = {}
    if not volumes_dir.is_dir():
        return sizes
    for vol in sorted(volumes_dir.iterdir()):
        sizes[vol.name] = sum(p.stat().st_size for p in vol.rglob("*") if p.is_file())
    return sizes


def check_script_size(script: str, cfg: SlurmConfig, volumes_dir: Path) -> None:
    """Refuse a script SLURM would refuse (or that exceeds the site's ``max_script_bytes``),
    naming the volumes that make it large."""
    size = len(script.encode())
    if size <= cfg.max_script_bytes:
        return
    sizes = volume_sizes(volumes_dir)
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    listed = ", ".join(f"{name!r} {n:,} bytes" for name, n in largest) or "none"
    raise BadRequest(
        f"spec.volumes: the pod's files make a batch script of {size:,} bytes (compressed and "
        f"encoded), more than the {cfg.max_script_bytes:,} this site allows without a shared "
        f"filesystem (max_script_bytes); largest volumes: {listed}. Make the ConfigMaps/"
        "Secrets smaller, or ask the site admin to raise max_script_bytes together with "
        "SLURM's SchedulerParameters=max_script_size"
    )


# --- the script ---------------------------------------------------------------------------------

PRELUDE = r"""# fd 3: the job's --output (container log records only); the wrapper's output: --error
exec 3>&1 1>&2
set -u
export TZ=UTC
printf -v IL_T0 '%(%s)T' -1
IL_DIR=""
IL_SIGNALED=""
# il_stamp NAME: CRI log lines (stdout) and, as "@il:NAME <line>" records, to the job's output;
# a last line without newline is tagged P (partial); long records go in "@il+NAME" pieces
il_stamp() {
  local LC_ALL=C line t rec tag
  while :; do
    if IFS= read -r line; then tag=F; elif [[ -n $line ]]; then tag=P; else break; fi
    t=${EPOCHREALTIME:-$(printf '%(%s)T' -1).000000}
    printf -v rec '%(%Y-%m-%dT%H:%M:%S)T.%s000Z stdout %s %s' "${t%.*}" "${t#*.}" "$tag" "$line"
    printf '%s\n' "$rec"
    while (( ${#rec} > @PIECE@ )); do
      printf '@il+%s %s\n' "$1" "${rec:0:@PIECE@}" >&3
      rec=${rec:@PIECE@}
    done
    printf '@il:%s %s\n' "$1" "$rec" >&3
    [[ $tag == F ]] || break
  done
}
# il_hook NAME [EXIT_CODE]: note a container's start (or its end) and report all states
il_hook() {
  local now s=0 f="$IL_DIR/containers/$1/report"
  printf -v now '%(%s)T' -1
  if (( $# == 1 )); then
    printf '%d\n' $((now - IL_T0)) > "$f"
  else
    [[ -r $f ]] && read -r s < "$f"
    printf '%s,%d,%d\n' "$s" $((now - IL_T0)) "$2" > "$f"
  fi
  il_report || :
}
# il_report: every container's state as the job's Comment, il1:T0:<c>;<c>;... with <c> empty
# (not started), S (started S s after T0) or S,F,CODE (finished); serialised by a lock
il_report() {
  [[ -n ${SLURM_JOB_ID:-} && -n $IL_DIR ]] || return 0
  local c e text="" sep=""
  {
    flock 9 2>/dev/null || :
    for c in "${IL_ORDER[@]}"; do
      e=""
      [[ -r $IL_DIR/containers/$c/report ]] && read -r e < "$IL_DIR/containers/$c/report"
      text+="$sep$e"
      sep=";"
    done
    "$IL_SCONTROL" update JobId="$SLURM_JOB_ID" Comment="@VERSION@:$IL_T0:$text"
  } 9>> "$IL_DIR/.report.lock"
}
# at the end: a last report (retried: it is what sacct keeps), then the directory goes
il_finish() {
  local rc=$? i
  trap - TERM
  if [[ -z $IL_SIGNALED ]]; then
    for i in 1 2 3; do il_report && break; sleep 1; done
  fi
  if [[ -n $IL_DIR && $IL_KEEP != 1 ]]; then
    cd / && { rm -rf -- "$IL_DIR" 2>/dev/null || { sleep 1; rm -rf -- "$IL_DIR"; }; }
  fi
  exit "$rc"
}
trap il_finish EXIT
trap 'IL_SIGNALED=1; exit 143' TERM INT
""".replace("@PIECE@", str(PIECE)).replace("@VERSION@", COMMENT_VERSION)


def setup_lines(cfg: SlurmConfig, uid: str, order: Iterable[str], payload: bytes) -> list[str]:
    """The start of a scratch job: settings, the prelude, a fresh directory under
    ``scratch_dir``, and the pod's files unpacked into it."""
    encoded = base64.encodebytes(payload).decode().rstrip("\n")
    names = " ".join(shlex.quote(n) for n in order)
    return [
        f"IL_SCONTROL={shlex.quote(cfg.scontrol)}",
        f"IL_KEEP={1 if cfg.keep_work_dirs else 0}",
        f"IL_ORDER=({names})",
        PRELUDE,
        # scratch_dir is validated (path characters and $VAR / ${VAR:-default} only); it is
        # double-quoted so that the job's shell expands its variables and nothing else
        f'IL_ROOT="{cfg.scratch_dir}"',
        f'mkdir -p -- "$IL_ROOT" && IL_DIR=$(mktemp -d -- "$IL_ROOT/interlink-{uid}.XXXXXX") || '
        '{ echo "interlink: cannot make a job directory under $IL_ROOT" >&2; exit 125; }',
        'cd -- "$IL_DIR" || exit 125',
        f"base64 -d <<'{PAYLOAD_END}' | tar -xzpf - --no-same-owner -C \"$IL_DIR\" || "
        '{ echo "interlink: cannot unpack the pod\'s files in $IL_DIR" >&2; exit 125; }',
        encoded,
        PAYLOAD_END,
    ]


# --- logs: splitting the job's output per container ---------------------------------------------


def split_records(data: bytes, pending: dict[str, bytes]) -> dict[str, bytes]:
    """The CRI log lines per container in ``data`` (whole lines of a job's output file);
    pieces of a record not finished yet stay in ``pending`` for the next call. Lines that are
    not records (never written by the job wrapper) are skipped."""
    out: dict[str, bytes] = {}
    for line in data.splitlines():
        if not line.startswith((b"@il:", b"@il+")):
            continue
        head, sep, piece = line[4:].partition(b" ")
        if not sep or not head:
            continue
        name = head.decode(errors="replace")
        if line[3:4] == b"+":
            pending[name] = pending.get(name, b"") + piece
        else:
            out[name] = out.get(name, b"") + pending.pop(name, b"") + piece + b"\n"
    return out


class LogDemux:
    """Keeps ``<pod dir>/containers/<name>/0.log`` up to date from a job's output file,
    reading only what was appended since the last :meth:`update`."""

    def __init__(self, source: Path, pod_dir: Path, names: Iterable[str]) -> None:
        self.source = source
        self.pod_dir = pod_dir
        self.targets = {n: pod_dir / "containers" / n / "0.log" for n in names}
        self.offset = 0
        self.pending: dict[str, bytes] = {}
        self._fresh = True

    def update(self) -> None:
        """Append the complete records written since the last call (blocking I/O); nothing
        once the pod's directory is gone (the pod was deleted)."""
        if not self.pod_dir.is_dir():
            return
        if self._fresh:  # (re)built from the start, e.g. after a plugin restart
            for path in self.targets.values():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            self._fresh = False
        try:
            with self.source.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        if not end:
            return
        self.offset += end
        for name, lines in split_records(data[:end], self.pending).items():
            target = self.targets.get(name)
            if target is not None:
                with target.open("ab") as fh:
                    fh.write(lines)
