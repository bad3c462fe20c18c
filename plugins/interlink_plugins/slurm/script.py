"""A pod as a SLURM job: the sbatch options and the batch script (pure functions, no I/O except
writing the pod's volumes; with ``shared_filesystem: false`` they are staged, packed into the
script and removed again, see :mod:`.scratch`).

Every value that comes from the pod (command, args, env names and values, paths, names) reaches
the shell through :func:`shlex.quote` or is refused; sbatch options are passed as ``argv`` (never
as ``#SBATCH`` lines), and those from the pod annotation must be on the admin's allow-list.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from interlink_core import conformance, podrunner
from interlink_core.errors import BadRequest
from interlink_core.jobfiles import (
    event_lines,
    refuse_supervision,
    supervision,
    write_job_files,
)
from interlink_core.models import JSON, RetrievedPodData
from interlink_core.podrunner import STANDALONE_MODULES
from interlink_core.podspec import (
    Mount,
    checked_uid,
    command_line,
    container_mounts,
    expand,
    materialize_volumes,
    parse_quantity,
    path_rewriter,
    pod_containers,
    resolve_env,
)
from interlink_core.probes import needs_supervision

from ..runtimes import (
    container_name,
    host_env,
    limit_options,
    remove_argv,
    run_args,
    run_as,
    wrapped,
)
from ..runtimes import env_file as podman_env_file
from .config import SCRATCH_RESERVED_FLAGS, SlurmConfig
from .scratch import ScratchDir, check_container_count, check_script_size, pack, quoter, setup_lines

FLAGS_ANNOTATION = "slurm-job.vk.io/flags"
PRE_EXEC_ANNOTATION = "slurm-job.vk.io/pre-exec"
FLAVOR_ANNOTATION = "slurm-job.vk.io/flavor"
GPU = "nvidia.com/gpu"
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SHORT = {
    "-t": "--time",
    "-p": "--partition",
    "-A": "--account",
    "-q": "--qos",
    "-C": "--constraint",
    "-N": "--nodes",
    "-n": "--ntasks",
    "-c": "--cpus-per-task",
    "-G": "--gpus",
    "-H": "--hold",
    "-J": "--job-name",
    "-o": "--output",
    "-e": "--error",
    "-D": "--chdir",
}
_NO_VALUE = {"--exclusive", "--hold"}
SCRATCH_NO_PROBES = (
    "probes and lifecycle hooks need the job's files on a filesystem shared with this plugin; "
    "this site runs with shared_filesystem: false"
)


@dataclass
class JobPlan:
    """What to submit for one pod."""

    options: list[str]
    script: str
    init: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    output: str = ""
    """``shared_filesystem: false``: the job's output file (container log records)."""
    error: str = ""
    """``shared_filesystem: false``: the job's error file (the wrapper's own messages)."""
    events: bool = False
    """The plugin wrote Events for the pod (``kube-events``) before it ran."""
    runner: bool = False
    """The job runs the pod runner (probes, hooks or restarts): deletion signals it first."""


# --- resources ----------------------------------------------------------------------------------


def _amount(container: JSON, resource: str) -> Decimal:
    res = container.get("resources") or {}
    for kind in ("limits", "requests"):
        value = (res.get(kind) or {}).get(resource)
        if value is not None:
            return parse_quantity(value)
    return Decimal(0)


def effective(containers: list[tuple[str, str, JSON]], resource: str) -> Decimal:
    """Kubernetes' effective pod demand: max(largest init container, sum of containers)."""
    init = [_amount(c, resource) for kind, _, c in containers if kind == "init"]
    main = sum((_amount(c, resource) for kind, _, c in containers if kind == "main"), Decimal(0))
    return max([main, *init])


def resource_options(containers: list[tuple[str, str, JSON]]) -> tuple[list[str], int]:
    """``--cpus-per-task``, ``--mem`` and ``--gres=gpu:N`` from the pod; also the GPU count."""
    opts: list[str] = []
    cpus = effective(containers, "cpu")
    if cpus > 0:
        opts.append(f"--cpus-per-task={max(1, math.ceil(cpus))}")
    mem = effective(containers, "memory")
    if mem > 0:
        opts.append(f"--mem={max(1, math.ceil(mem / 2**20))}M")
    gpus = math.ceil(effective(containers, GPU))
    if gpus > 0:
        opts.append(f"--gres=gpu:{gpus}")
    return opts, gpus


# --- sbatch options from the pod ----------------------------------------------------------------


def user_flags(annotation: str, allowed: list[str], key: str = "allowed_flags") -> list[str]:
    """Options from ``slurm-job.vk.io/flags``, each checked against the allow-list (``key``
    names it in refusals)."""
    try:
        tokens = shlex.split(annotation)
    except ValueError as exc:
        raise BadRequest(f"metadata.annotations[{FLAGS_ANNOTATION!r}]: {exc}") from None
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("-"):
            raise BadRequest(
                f"metadata.annotations[{FLAGS_ANNOTATION!r}]: {tok!r} is not an sbatch option"
            )
        name, eq, value = tok.partition("=")
        if not name.startswith("--") and len(name) > 2:  # -t01:00:00
            name, value, eq = name[:2], name[2:], "="
        long = _SHORT.get(name, name)
        if long not in allowed:
            raise BadRequest(
                f"metadata.annotations[{FLAGS_ANNOTATION!r}]: option {name} is not allowed "
                f"here (allowed: {', '.join(allowed)}); ask the site admin to add it to "
                f"{key}"
            )
        if not eq and long not in _NO_VALUE:
            if i + 1 >= len(tokens):
                raise BadRequest(
                    f"metadata.annotations[{FLAGS_ANNOTATION!r}]: option {name} needs a value"
                )
            i += 1
            value = tokens[i]
        if any(ord(ch) < 32 for ch in value):
            raise BadRequest(
                f"metadata.annotations[{FLAGS_ANNOTATION!r}]: the value of {name} has "
                "control characters"
            )
        out.append(f"{long}={value}" if (eq or long not in _NO_VALUE) else long)
        i += 1
    return out


def flavor_flags(pod: JSON, cfg: SlurmConfig, gpus: int) -> list[str]:
    """Flags of the flavor the pod asks for, or of the GPU / default flavor."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    name = annotations.get(FLAVOR_ANNOTATION)
    if name is not None:
        if name not in cfg.flavors:
            raise BadRequest(
                f"metadata.annotations[{FLAVOR_ANNOTATION!r}]: no flavor {name!r}; this site "
                f"offers: {', '.join(sorted(cfg.flavors)) or 'none'}"
            )
    elif gpus and cfg.gpu_flavor:
        name = cfg.gpu_flavor
    else:
        name = cfg.default_flavor
    return list(cfg.flavors[name].flags) if name else []


# --- the script ---------------------------------------------------------------------------------

_PRELUDE = r"""set -u
export TZ=UTC
# one CRI log line per output line: <time> stdout F <text>
il_stamp() {
  local line t
  while IFS= read -r line || [[ -n $line ]]; do
    t=${EPOCHREALTIME:-$(printf '%(%s)T' -1).000000}
    printf '%(%Y-%m-%dT%H:%M:%S)T.%s000Z stdout F %s\n' "${t%.*}" "${t#*.}" "$line"
  done
}
il_hook() { :; }
"""
# il_run is the same in both modes; il_stamp and il_hook differ (see scratch.PRELUDE)
_RUN = r"""# il_run NAME WORKDIR COMMAND...: run one container, record start, log and exit code
il_run() {
  local name=$1 wd=$2 code
  shift 2
  local d="$IL_DIR/containers/$name"
  mkdir -p "$d"
  printf '%s\n' "${EPOCHREALTIME:-$(printf '%(%s)T' -1)}" > "$d/started.tmp"
  mv "$d/started.tmp" "$d/started"
  il_hook "$name"
  ( cd "$wd" && exec "$@" 3>&- ) < /dev/null 2>&1 | il_stamp "$name" >> "$d/0.log"
  code=${PIPESTATUS[0]}
  printf '{"exitCode": %d, "finishedAt": %s}\n' "$code" \
    "${EPOCHREALTIME:-$(printf '%(%s)T' -1)}" > "$d/exit.tmp"
  mv "$d/exit.tmp" "$d/exit"
  il_hook "$name" "$code"
  return "$code"
}
"""


def image_ref(image: str, prefix: str) -> str:
    """An image name as the runtime wants it: absolute paths and URLs as they are."""
    if image.startswith("/") or "://" in image:
        return image
    return prefix + image


def runtime_argv(
    cfg: SlurmConfig,
    c: JSON,
    where: str,
    env: dict[str, str],
    binds: list[tuple[str, str, bool]],
    argv: list[str],
    has_command: bool,
    workdir: str | None,
    pod_dir: Path,
    *,
    command_len: int = 0,
    user: str | None = None,
    pod_uid: str = "",
) -> list[str]:
    """The command line that runs one container with the configured runtime (``podman``:
    the first ``command_len`` words of ``argv`` are the pod's ``command``, the rest its
    ``args``; ``user`` is its ``--user``)."""
    name = str(c["name"])
    image = str(c.get("image") or "")
    if cfg.runtime == "host":
        return ["env", "-i", *(f"{k}={v}" for k, v in host_env(env).items()), *argv]
    if cfg.runtime == "podman":
        pm = cfg.podman
        state = str(pod_dir / "containers" / name)
        _, multiline = podman_env_file(env, where)
        cname = container_name(pod_uid or pod_dir.name, name)
        run = run_args(
            pm,
            name=cname,
            image=image,
            command=argv[:command_len],
            args=argv[command_len:],
            env_path=f"{state}/env",
            multiline_env=multiline,
            binds=binds,
            workdir=workdir,
            user=user,
            limits=limit_options(c, where),
            where=where,
        )
        return wrapped(pm, cname, state, pm.stop_timeout, run)
    if not image:
        raise BadRequest(f"{where}.image: required with runtime {cfg.runtime}")
    if cfg.runtime in ("apptainer", "singularity"):
        ap = cfg.apptainer
        binary = ap.binary if cfg.runtime == "apptainer" else "singularity"
        out = [binary, "exec" if has_command else "run", *ap.options]
        out += ["--env-file", str(pod_dir / "containers" / name / "env")]
        for src, dst, ro in binds:
            out += ["--bind", f"{src}:{dst}:{'ro' if ro else 'rw'}"]
        if workdir:
            out += ["--pwd", workdir]
        return [*out, image_ref(image, ap.image_prefix), *argv]
    if workdir:
        raise BadRequest(
            f"{where}.workingDir: enroot cannot start a container in a given directory (its "
            "image's working directory is used); remove workingDir or cd in the command"
        )
    en = cfg.enroot
    out = [en.binary, "start", *en.options]
    for src, dst, ro in binds:
        out += ["--mount", f"{src}:{dst}:{'ro' if ro else 'rw'}"]
    for k, v in env.items():
        out += ["--env", f"{k}={v}"]
    return [*out, enroot_name(pod_dir, name), *argv]


def enroot_name(pod_dir: Path, container: str) -> str:
    """The enroot container made for one container of one pod."""
    return f"il-{pod_dir.name}-{container}"


def enroot_prepare(cfg: SlurmConfig, c: JSON, where: str, pod_dir: Path) -> list[list[str]]:
    """Commands that turn the image into an enroot container: import (unless the image is
    already a squashfs file), then create."""
    image = str(c.get("image") or "")
    if not image:
        raise BadRequest(f"{where}.image: required with runtime enroot")
    name = str(c["name"])
    en = cfg.enroot
    steps: list[list[str]] = []
    if image.startswith("/") and image.endswith(".sqsh"):
        sqsh = image
    else:
        sqsh = str(pod_dir / "images" / f"{name}.sqsh")
        steps.append(["mkdir", "-p", str(pod_dir / "images")])
        steps.append([en.binary, "import", "-o", sqsh, image_ref(image, en.image_prefix)])
    steps.append([en.binary, "create", "--force", "--name", enroot_name(pod_dir, name), sqsh])
    return steps


def env_file(env: dict[str, str], where: str) -> str:
    """An Apptainer ``--env-file``: shell assignments, every value quoted."""
    lines = []
    for k, v in env.items():
        if not _SHELL_NAME.match(k):
            raise BadRequest(
                f"{where}.env: {k!r} is not a valid variable name for a container runtime "
                "(letters, digits and '_' only)"
            )
        lines.append(f"{k}={shlex.quote(v)}")
    return "\n".join(lines) + "\n"


@dataclass
class _Body:
    """The per-container part of a script being built."""

    plan: JobPlan
    quote: Callable[[str], str]
    lines: list[str] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    runner: dict[str, list[JSON]] = field(default_factory=lambda: {"init": [], "containers": []})
    """The pod runner's spec of each container (used when the pod needs supervision)."""
    prep: list[str] = field(default_factory=list)
    """What the pod runner's path runs before the runner (working dirs, image preparation)."""
    cleanup_argv: list[list[str]] = field(default_factory=list)
    supervised: bool = False

    def command(self, argv: list[str]) -> str:
        """One shell command line, every word quoted."""
        return " ".join(self.quote(x) for x in argv)


def _add_container(
    b: _Body,
    data: RetrievedPodData,
    cfg: SlurmConfig,
    kind: str,
    where: str,
    c: JSON,
    volumes: dict[str, Path],
    job_dir: Path,
    relocate: Callable[[list[Mount]], list[Mount]],
) -> None:
    """Append one container's lines (run, and for enroot prepare and clean up)."""
    pod = data.pod
    name = str(c["name"])
    b.plan.images[name] = str(c.get("image") or "")
    command, args = command_line(c, where)
    if cfg.runtime == "host" and not command and not args:
        raise BadRequest(
            f"{where}.command: required with runtime host (there is no image entrypoint)"
        )
    env = resolve_env(pod, c, data, "", host_ip="")
    for k in env:
        if not _ENV_NAME.match(k):
            raise BadRequest(f"{where}.env: {k!r} is not a valid environment variable name")
    mounts = relocate(container_mounts(c, volumes, where, env))
    binds = [(str(m.source), m.mount_path, m.read_only) for m in mounts]
    argv = [expand(a, env) for a in [*command, *args]]  # $(VAR), as a kubelet expands them
    workdir = c.get("workingDir")
    if workdir is not None and (not isinstance(workdir, str) or not workdir.startswith("/")):
        raise BadRequest(f"{where}.workingDir: {workdir!r} must be an absolute path")
    if cfg.runtime == "host":
        rewrite = path_rewriter(mounts)
        env = {k: rewrite(v) for k, v in env.items()}
        argv = [rewrite(a) for a in argv]
        env["INTERLINK_POD_DIR"] = str(job_dir)
        host_wd = rewrite(workdir) if workdir else str(job_dir / "work" / name)
        cmd = runtime_argv(cfg, c, where, env, binds, argv, bool(command), None, job_dir)
    elif cfg.runtime == "podman":
        b.files[f"containers/{name}/env"] = podman_env_file(env, where)[0]
        host_wd = str(job_dir)
        cmd = runtime_argv(
            cfg,
            c,
            where,
            env,
            binds,
            argv,
            bool(command),
            workdir,
            job_dir,
            command_len=len(command),
            user=run_as(pod, c, where),
            pod_uid=checked_uid(pod),
        )
        # the pod runner (probes, restarts) removes it when it ends, whatever happened
        b.cleanup_argv.append(remove_argv(cfg.podman, [container_name(checked_uid(pod), name)]))
    else:
        b.files[f"containers/{name}/env"] = env_file(env, where)
        host_wd = str(job_dir)
        cmd = runtime_argv(cfg, c, where, env, binds, argv, bool(command), workdir, job_dir)
    if cfg.runtime == "enroot":
        for step in enroot_prepare(cfg, c, where, job_dir):
            b.lines.append(b.command(step) + " || exit 125")
        b.cleanup.append(b.command([cfg.enroot.binary, "remove", "-f", enroot_name(job_dir, name)]))
        b.cleanup_argv.append([cfg.enroot.binary, "remove", "-f", enroot_name(job_dir, name)])
    line = b.command(["il_run", name, host_wd, *cmd])
    b.lines.append(f"mkdir -p {b.quote(host_wd)}")
    _add_runner_spec(b, pod, cfg, kind, where, c, cmd, argv, host_wd, job_dir, mounts)
    if kind == "init":
        b.plan.init.append(name)
        b.lines.append(f"{line} || exit $?")
    else:
        b.plan.containers.append(name)
        b.lines += [f"{line} &", "il_pids+=($!)"]


def exec_prefix(cfg: SlurmConfig, cmd: list[str], argv: list[str], cname: str) -> list[str]:
    """How the job runs a probe's or hook's command in a container: ``host``, the container's
    own ``env -i ...`` prefix; ``podman``, ``podman exec`` in its container (``cname``);
    Apptainer/Singularity, ``exec`` in the same image with the same binds and env file; enroot,
    ``start`` of the same container."""
    if cfg.runtime == "podman":
        return [cfg.podman.binary, "exec", cname]
    prefix = cmd[: len(cmd) - len(argv)] if argv and cmd[-len(argv) :] == argv else list(cmd)
    if cfg.runtime in ("apptainer", "singularity") and prefix[1:2] == ["run"]:
        prefix[1] = "exec"
    return prefix


def _add_runner_spec(
    b: _Body,
    pod: JSON,
    cfg: SlurmConfig,
    kind: str,
    where: str,
    c: JSON,
    cmd: list[str],
    argv: list[str],
    host_wd: str,
    job_dir: Path,
    mounts: list[Mount],
) -> None:
    """The container as the pod runner runs it (probes, hooks, restarts)."""
    name = str(c["name"])
    fix = path_rewriter(mounts) if cfg.runtime == "host" else str
    sup = supervision(pod, c, where, fix)
    b.supervised = b.supervised or needs_supervision(sup)
    b.prep.append(f"mkdir -p {b.quote(host_wd)}")
    b.runner["init" if kind == "init" else "containers"].append(
        {
            "name": name,
            "argv": cmd,
            "cwd": host_wd,
            "exec_prefix": exec_prefix(cfg, cmd, argv, container_name(checked_uid(pod), name)),
            "supervision": sup,
        }
    )


_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from interlink_core.podrunner import main; sys.exit(main())"
)


def _runner_job(b: _Body, pod: JSON, pod_dir: Path) -> list[str]:
    """The script lines and files that run the pod with the pod runner under the node's
    ``python3``: a copy of the runner's standard-library modules in ``lib/``, its
    ``spec.json``, and ``exec`` (so that ``scancel --batch`` signals the runner itself)."""
    core = Path(podrunner.__file__).parent
    for module in STANDALONE_MODULES:
        b.files[f"lib/interlink_core/{module}"] = (core / module).read_text()
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    spec = {"grace": 30 if grace is None else grace, **b.runner, "cleanup": b.cleanup_argv}
    b.files["spec.json"] = json.dumps(spec)
    boot = ["exec", "python3", "-I", "-c", _BOOT, f"{pod_dir}/lib", str(pod_dir)]
    return [*b.prep, b.command(boot)]


def _options(
    data: RetrievedPodData,
    cfg: SlurmConfig,
    pod_dir: Path,
    containers: list[tuple[str, str, JSON]],
    scratch: bool,
) -> list[str]:
    """sbatch's options: where the job writes and works, then resources and flags."""
    meta = data.pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    res_opts, gpus = resource_options(containers)
    options = [f"--job-name={_job_name(meta)}"]
    if scratch:
        output, error = _scratch_outputs(cfg, checked_uid(data.pod))
        options += [
            f"--output={output}",
            f"--error={error}",
            "--open-mode=append",
            f"--chdir={cfg.logs_path}",
        ]
    else:
        options += [f"--output={pod_dir / 'job.out'}", f"--chdir={pod_dir}"]
    if cfg.partition:
        options.append(f"--partition={cfg.partition}")
    if cfg.account:
        options.append(f"--account={cfg.account}")
    options += res_opts + list(cfg.default_flags) + flavor_flags(data.pod, cfg, gpus)
    if FLAGS_ANNOTATION in annotations:
        flags = user_flags(str(annotations[FLAGS_ANNOTATION]), cfg.allowed_flags, cfg.flags_key)
        for flag in flags if scratch else []:
            if flag.split("=", 1)[0] in SCRATCH_RESERVED_FLAGS:
                raise BadRequest(
                    f"metadata.annotations[{FLAGS_ANNOTATION!r}]: {flag.split('=', 1)[0]} "
                    "cannot be used on this site: without a shared filesystem the job's "
                    "comment and output carry the container states and logs"
                )
        options += flags
    return options


def build_job(
    data: RetrievedPodData,
    cfg: SlurmConfig,
    pod_dir: Path,
    notices: list[tuple[str, str, str]] | None = None,
) -> tuple[JobPlan, dict[str, str]]:
    """The sbatch options and script for a pod, and the files to write next to it
    (relative path → content). Volumes are written under ``pod_dir/volumes`` here.

    ``notices``: the Warning Events to write in ``kube-events`` (default: the conformance check
    of the pod for SLURM and this runtime, which refuses what SLURM cannot run).

    With ``shared_filesystem: false`` the volumes and env files are staged under
    ``pod_dir/stage``, packed into the script (see :mod:`.scratch`) and the stage removed; only
    ``kube-events`` is returned (for the plugin) and the script names its directory through
    ``$IL_DIR``."""
    uid = checked_uid(data.pod)
    containers = pod_containers(data.pod)
    if notices is None:
        notices = conformance.check(data.pod, "slurm", cfg.runtime)
    scratch = None if cfg.shared_filesystem else ScratchDir.new(uid)
    if scratch is not None:
        check_container_count(len(containers))
    stage = pod_dir / "stage" if scratch is not None else pod_dir
    job_dir = Path(str(scratch.path)) if scratch is not None else pod_dir
    try:
        volumes = materialize_volumes(data, stage / "volumes", pod_ip="", host_ip="")
        options = _options(data, cfg, pod_dir, containers, scratch is not None)
        b = _Body(JobPlan(options=options, script=""), quoter(scratch))

        def relocate(mounts: list[Mount]) -> list[Mount]:
            return scratch.relocate(mounts, stage) if scratch is not None else mounts

        for kind, where, c in containers:
            _add_container(b, data, cfg, kind, where, c, volumes, job_dir, relocate)
        pre_exec = _pre_exec(data.pod, cfg)
        header = [
            "#!/bin/bash",
            f"# interLink job for pod uid {uid}",
            "# sbatch options (passed on the command line): "
            + " ".join(shlex.quote(o) for o in options).replace("\n", " "),
        ]
        if scratch is None:
            header += [f"IL_DIR={shlex.quote(str(pod_dir))}", _PRELUDE, _RUN]
        else:
            write_job_files(stage, b.files, ())
            b.files = {}
            order = [*b.plan.init, *b.plan.containers]
            header += [*setup_lines(cfg, uid, order, pack(stage)), _RUN]
        if notices:  # the plugin reads them from pod_dir (also without a shared filesystem)
            b.files["kube-events"] = event_lines(notices, time.time())
            b.plan.events = True
        if pre_exec:
            header += ["# pre-exec from the pod annotation", pre_exec]
        tail = [
            "il_rc=0",
            'for il_p in "${il_pids[@]}"; do wait "$il_p" || il_rc=$?; done',
            *(f"{line} >/dev/null 2>&1" for line in b.cleanup),
            'exit "$il_rc"',
        ]
        if cfg.runtime == "podman":
            # on scancel the job removes its containers before it ends (they are children of
            # podman's conmon, not of the job); SLURM keeps the job COMPLETING meanwhile, so
            # the plugin's delete returns once they are gone
            names = [container_name(uid, n) for n in [*b.plan.init, *b.plan.containers]]
            down = remove_argv(cfg.podman, names, cfg.podman.stop_timeout)
            b.lines.insert(
                0, f"trap {shlex.quote(b.command(down) + ' >/dev/null 2>&1; exit 143')} TERM INT"
            )
        if scratch is not None:
            refuse_supervision(data.pod, SCRATCH_NO_PROBES)
        if b.supervised and scratch is None:
            b.plan.runner = True
            b.plan.script = "\n".join([*header, *_runner_job(b, data.pod, pod_dir)]) + "\n"
        else:
            b.plan.script = "\n".join([*header, "il_pids=()", *b.lines, *tail]) + "\n"
        if scratch is not None:
            b.plan.output, b.plan.error = _scratch_outputs(cfg, uid)
            check_script_size(b.plan.script, cfg, stage / "volumes")
    finally:
        if scratch is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return b.plan, b.files


def _scratch_outputs(cfg: SlurmConfig, uid: str) -> tuple[str, str]:
    """A scratch job's ``--output`` (container log records) and ``--error`` files."""
    return str(cfg.logs_path / f"{uid}.out"), str(cfg.logs_path / f"{uid}.err")


def _pre_exec(pod: JSON, cfg: SlurmConfig) -> str:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    pre_exec = annotations.get(PRE_EXEC_ANNOTATION)
    if pre_exec is not None and not cfg.allow_pre_exec:
        raise BadRequest(
            f"metadata.annotations[{PRE_EXEC_ANNOTATION!r}]: this site does not allow pre-exec "
            "commands (allow_pre_exec is false)"
        )
    return str(pre_exec or "")


def _job_name(meta: JSON) -> str:
    raw = f"{meta.get('namespace', '')}-{meta.get('name', '')}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)[:100] or "interlink-pod"


def record_data(plan: JobPlan, pod_dir: Path) -> dict[str, Any]:
    """What the plugin remembers with the job id (for a scratch job also its output files)."""
    data: dict[str, Any] = {
        "dir": str(pod_dir),
        "init": plan.init,
        "containers": plan.containers,
        "images": plan.images,
    }
    if plan.output:
        data["scratch"] = {"output": plan.output, "error": plan.error}
    if plan.runner:
        data["runner"] = True
    if plan.events:
        data["events"] = True
    return data
