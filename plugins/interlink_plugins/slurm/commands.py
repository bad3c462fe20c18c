"""Talking to SLURM: running its commands (async, argv only, no shell) and parsing what they
print."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from interlink_core.errors import BackendUnavailable, BadRequest

SQUEUE_FORMAT = "%i|%T|%r|%S|%B|%k"
SACCT_FIELDS = "JobIDRaw,State,ExitCode,Start,End,Comment"
# the comment comes last: it is split off whole, whatever it holds


@dataclass(frozen=True)
class JobState:
    """What SLURM says about one job."""

    job_id: str
    state: str
    """SLURM state, e.g. PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT."""
    reason: str = ""
    start: str = ""
    """Start time (actual, or expected for a pending job) as SLURM prints it, or ''."""
    end: str = ""
    exit_code: int | None = None
    signal: int | None = None
    comment: str = ""
    """The job's Comment (``shared_filesystem: false`` jobs report container states there)."""
    host: str = ""
    """The node running the batch script (squeue's BatchHost), '' while pending."""


@dataclass
class Calls:
    """How many times each SLURM command ran (for benchmarks and tests)."""

    sbatch: int = 0
    squeue: int = 0
    sacct: int = 0
    scancel: int = 0
    sinfo: int = 0


async def run(argv: list[str], limit: float = 60.0) -> tuple[int, str, str]:
    """Run a command; ``(returncode, stdout, stderr)``. A missing binary is a clear 503."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise BackendUnavailable(
            f"{argv[0]} not found: is SLURM installed here and on PATH?"
        ) from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BackendUnavailable(f"{argv[0]} did not answer within {limit:.0f}s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def parse_sbatch(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` (``id`` or ``id;cluster``)."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    job_id = first.split(";")[0].strip()
    if not job_id.isdigit():
        raise BackendUnavailable(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return job_id


def sbatch_error(stderr: str) -> Exception:
    """sbatch refused the job: a user error (bad option, partition, limits) is a 400."""
    text = stderr.strip().replace("sbatch: error: ", "")
    user_side = (
        "invalid",
        "unrecognized",
        "Requested node configuration",
        "not available",
        "exceeds",
        "QOSMax",
        "AssocMax",
        "Batch job submission failed",
    )
    if any(s in text for s in user_side):
        return BadRequest(f"SLURM refused the job: {text}")
    return BackendUnavailable(f"sbatch failed: {text or 'no message'}")


def parse_squeue(stdout: str) -> dict[str, JobState]:
    """Lines of ``squeue -h -o '%i|%T|%r|%S|%B|%k'`` (batch host and comment optional)."""
    out: dict[str, JobState] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|", 5)
        if len(parts) < 4 or not parts[0]:
            continue
        start = "" if parts[3] in ("N/A", "Unknown", "None") else parts[3]
        reason = "" if parts[2] in ("None", "(null)") else parts[2]
        host = parts[4] if len(parts) > 4 and parts[4] not in ("n/a", "N/A", "(null)") else ""
        comment = _comment(parts[5]) if len(parts) > 5 else ""
        out[parts[0]] = JobState(parts[0], parts[1], reason, start, comment=comment, host=host)
    return out


def parse_node_addr(stdout: str) -> str:
    """``NodeAddr`` from ``scontrol show node NAME -o`` ('' if absent)."""
    for word in stdout.split():
        key, sep, value = word.partition("=")
        if sep and key == "NodeAddr":
            return value
    return ""


def parse_sacct(stdout: str) -> dict[str, JobState]:
    """Lines of ``sacct -n -X -P -o JobIDRaw,State,ExitCode,Start,End,Comment`` (the comment
    is optional; it is empty unless slurm.conf has ``AccountingStoreFlags=job_comment``)."""
    out: dict[str, JobState] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|", 5)
        if len(parts) < 5 or not parts[0]:
            continue
        state = parts[1].split()[0] if parts[1] else "UNKNOWN"  # "CANCELLED by 0"
        code, _, sig = parts[2].partition(":")
        out[parts[0]] = JobState(
            parts[0],
            state,
            start="" if parts[3] in ("Unknown", "None") else parts[3],
            end="" if parts[4] in ("Unknown", "None") else parts[4],
            exit_code=int(code) if code.isdigit() else None,
            signal=int(sig) if sig.isdigit() and int(sig) else None,
            comment=_comment(parts[5]) if len(parts) > 5 else "",
        )
    return out


def _comment(text: str) -> str:
    return "" if text in ("(null)", "None") else text


def parse_sinfo(stdout: str) -> tuple[int, int, int]:
    """CPUs that can run jobs at once, memory (MiB) and GPUs from ``sinfo -h -N -o
    '%N|%c|%m|%G|%h'`` (nodes counted once). A node whose partition says
    ``OverSubscribe=FORCE:N`` runs N jobs on each CPU, so it counts N times its CPUs
    (``YES:N`` only for jobs that ask for it, which ours do not)."""
    seen: dict[str, tuple[int, int, int]] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4:
            continue
        cpus = int(parts[1]) if parts[1].isdigit() else 0
        mem = int(parts[2].rstrip("+")) if parts[2].rstrip("+").isdigit() else 0
        gpus = 0
        for gres in parts[3].split(","):
            bits = gres.split("(")[0].split(":")
            if bits[0] == "gpu" and bits[-1].isdigit():
                gpus += int(bits[-1])
        runnable = cpus * _forced_sharing(parts[4] if len(parts) > 4 else "")
        if parts[0] not in seen or runnable > seen[parts[0]][0]:
            seen[parts[0]] = (runnable, mem, gpus)
    return (
        sum(v[0] for v in seen.values()),
        sum(v[1] for v in seen.values()),
        sum(v[2] for v in seen.values()),
    )


def _forced_sharing(oversubscribe: str) -> int:
    """Jobs per CPU from sinfo's ``%h`` (``FORCE:4`` → 4; ``NO``, ``YES:4``, ... → 1)."""
    kind, _, count = oversubscribe.partition(":")
    if kind == "FORCE":
        return int(count) if count.isdigit() else 4  # SLURM's default count for FORCE
    return 1
