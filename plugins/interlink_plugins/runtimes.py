"""Container runtimes shared by the plugins: the host runtime's default ``PATH``, and podman.
(What each runtime does not enforce, and the Events saying so, is in
:mod:`interlink_core.conformance`.)

podman runs a container as podman-hpc-style sites do::

    podman run --rm --replace --name il-<pod uid>-<container> --network host \\
      --env-file <dir>/env -v <src>:<dst>[:ro] -w <workingDir> --memory <limit> \\
      --user <runAsUser>[:<runAsGroup>] [--entrypoint <command as JSON>] <image> <args...>

Kubernetes' ``command`` replaces the image's ENTRYPOINT (and then its CMD is not used, as with
any OCI runtime), ``args`` replace its CMD; with neither, the image runs as built.

Every ``podman run`` goes through a small bash wrapper (:data:`WRAPPER`, passed inline with
``bash -c`` so a job needs no extra file) that

* stops the container (``podman stop``) when the wrapper gets SIGTERM/SIGINT/SIGHUP — the
  container is a child of podman's ``conmon``, not of the job, so killing the job's processes
  alone would leave it running;
* after an exit with code 137, checks whether the kernel's memory cgroup OOM killer killed it:
  podman 4.3 on cgroup v1 reports ``OOMKilled=false`` even then, so the kernel's own report
  (``dmesg``: ``oom-kill:... task_memcg=.../libpod-<container id>``) is read, and an ``oom``
  marker file is written in the container's state directory; status assembly reports
  ``OOMKilled`` when it is there (:func:`interlink_core.jobfiles.exit_reason`). Reading the
  kernel log needs root or ``kernel.dmesg_restrict=0``; without it the exit stays ``Error``.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

from pydantic import Field, field_validator

from interlink_core.config import StrictModel
from interlink_core.errors import BadRequest
from interlink_core.jobfiles import OOM_MARKER
from interlink_core.models import JSON
from interlink_core.podspec import parse_quantity

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The ``PATH`` a host-runtime container gets unless the pod sets its own (the one of Debian's
login shells and of container images)."""
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_COMMAND = re.compile(r"^[A-Za-z0-9_./+-]+$")


class PodmanConfig(StrictModel):
    """How containers run under podman (``runtime: podman``)."""

    binary: str = Field(default="podman", description="The podman command (name or path).")
    network: str = Field(
        default="host",
        description="podman's --network: `host` (the pod uses the node's network, as on HPC "
        "sites) or `none`.",
    )
    options: list[str] = Field(
        default_factory=list,
        description="Options put after `podman run` for every container (trusted, e.g. "
        "--pull=never, --security-opt=...).",
    )
    image_prefix: str = Field(
        default="",
        description="Prefix for image names without a registry (e.g. docker.io/); empty: "
        "podman's own short-name resolution (registries.conf).",
    )
    stop_timeout: int = Field(
        default=2,
        ge=0,
        description="SLURM: seconds `podman stop` gives a container on job cancellation "
        "before killing it; keep it below SLURM's KillWait. The local plugin uses the pod's "
        "grace period.",
    )

    @field_validator("binary")
    @classmethod
    def _is_a_command(cls, value: str) -> str:
        if not _COMMAND.match(value):
            raise ValueError(f"{value!r} must be a command name or path (no spaces or quotes)")
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        if value not in ("host", "none"):
            raise ValueError(f"{value!r}: use host or none")
        return value


def container_name(pod_uid: str, container: str) -> str:
    """The podman container name of one container of one pod (unique per pod + container)."""
    return f"il-{pod_uid}-{container}"


def host_env(env: dict[str, str]) -> dict[str, str]:
    """A host-runtime container's environment: :data:`DEFAULT_PATH` unless the pod sets
    ``PATH``."""
    return {"PATH": DEFAULT_PATH, **env}


def env_file(env: dict[str, str], where: str) -> tuple[str, dict[str, str]]:
    """podman's ``--env-file`` (``NAME=value`` lines, values taken literally) and the
    variables whose values have a newline (an env file cannot hold them: they go as ``--env``).
    Names are checked as Kubernetes checks them."""
    lines: list[str] = []
    multiline: dict[str, str] = {}
    for k, v in env.items():
        if not _ENV_NAME.match(k):
            raise BadRequest(f"{where}.env: {k!r} is not a valid environment variable name")
        if "\n" in v or "\r" in v:
            multiline[k] = v
        else:
            lines.append(f"{k}={v}")
    return "".join(line + "\n" for line in lines), multiline


def _int_field(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{field}: {value!r} must be a non-negative integer")
    return value


def run_as(pod: JSON, c: JSON, where: str) -> str | None:
    """``--user`` from ``securityContext.runAsUser``/``runAsGroup`` (the container's over the
    pod's), or ``None`` for the image's user."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = c.get("securityContext") or {}
    ids: dict[str, int | None] = {}
    for key in ("runAsUser", "runAsGroup"):
        if key in sc:
            ids[key] = _int_field(sc[key], f"{where}.securityContext.{key}")
        else:
            ids[key] = _int_field(pod_sc.get(key), f"spec.securityContext.{key}")
    user, group = ids["runAsUser"], ids["runAsGroup"]
    if user is None and group is None:
        return None
    if user is None:
        raise BadRequest(
            f"{where}.securityContext.runAsGroup: podman needs runAsUser with runAsGroup; set "
            "runAsUser too"
        )
    return f"{user}:{group}" if group is not None else str(user)


def _limit(c: JSON, resource: str, where: str) -> Decimal | None:
    value = ((c.get("resources") or {}).get("limits") or {}).get(resource)
    if value is None:
        return None
    amount = parse_quantity(value)
    if amount <= 0:
        raise BadRequest(f"{where}.resources.limits.{resource}: {value!r} must be positive")
    return amount


def limit_options(c: JSON, where: str) -> list[str]:
    """``--memory`` (and the same ``--memory-swap``: no swap, as a kubelet runs containers) and
    ``--cpus`` from the container's ``resources.limits``."""
    opts: list[str] = []
    memory = _limit(c, "memory", where)
    if memory is not None:
        n = math.ceil(memory)
        opts += [f"--memory={n}", f"--memory-swap={n}"]
    cpu = _limit(c, "cpu", where)
    if cpu is not None:
        opts.append(f"--cpus={cpu.normalize():f}")
    return opts


def _checked_mount(src: str, dst: str, where: str) -> None:
    for path in (src, dst):
        if ":" in path or "," in path:
            raise BadRequest(
                f"{where}.volumeMounts: {path!r} cannot be mounted by podman (':' and ',' "
                "separate its mount options); use a path without them"
            )


def image_ref(image: str, prefix: str) -> str:
    """An image name with ``prefix`` added unless it names a registry (``host.domain/...``,
    ``host:port/...``, ``localhost/...``) already."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return prefix + image


def run_args(
    cfg: PodmanConfig,
    *,
    name: str,
    image: str,
    command: list[str],
    args: list[str],
    env_path: str,
    multiline_env: dict[str, str],
    binds: list[tuple[str, str, bool]],
    workdir: str | None,
    user: str | None,
    limits: list[str],
    where: str,
) -> list[str]:
    """``podman run``'s arguments for one container (without ``podman`` itself)."""
    if not image:
        raise BadRequest(f"{where}.image: required with runtime podman")
    out = ["run", "--rm", "--replace", "--name", name, f"--network={cfg.network}", *cfg.options]
    out += ["--env-file", env_path]
    for k, v in multiline_env.items():
        out += ["--env", f"{k}={v}"]
    for src, dst, ro in binds:
        _checked_mount(src, dst, where)
        out += ["-v", f"{src}:{dst}:{'ro' if ro else 'rw'}"]
    if workdir:
        out += ["-w", workdir]
    out += limits
    if user is not None:
        out += ["--user", user]
    if command:
        out += ["--entrypoint", json.dumps(command)]
    return [*out, "--", image_ref(image, cfg.image_prefix), *args]


WRAPPER = r"""podman=$1 name=$2 state=$3 grace=$4
shift 4
cid="$state/podman.cid"
mkdir -p "$state"
rm -f "$state/oom" "$cid"
stopped=
il_stop() {
  stopped=1
  "$podman" stop --ignore -t "$grace" "$name" >/dev/null 2>&1
}
trap il_stop TERM INT HUP
"$podman" "$1" --cidfile "$cid" "${@:2}" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
wait "$pid"
rc=$?
# stopped: gone before we end (podman run's own --rm may not have run: it was signalled too)
[ -z "$stopped" ] || "$podman" rm --force --ignore "$name" >/dev/null 2>&1
if [ "$rc" = 137 ] && [ -s "$cid" ] &&
  dmesg 2>/dev/null | grep -q "task_memcg=[^ ]*libpod-$(cat "$cid")"; then
  : > "$state/OOM_MARKER"
fi
rm -f "$cid"
exit "$rc"
""".replace("OOM_MARKER", OOM_MARKER)
"""The wrapper around ``podman run``: ``bash -c WRAPPER il-podman PODMAN NAME STATE_DIR
GRACE run ARGS...`` (see the module docstring)."""


def wrapped(cfg: PodmanConfig, name: str, state_dir: str, grace: int, run: list[str]) -> list[str]:
    """The command line that runs ``podman run`` through :data:`WRAPPER`."""
    return ["bash", "-c", WRAPPER, "il-podman", cfg.binary, name, state_dir, str(grace), *run]


def remove_argv(cfg: PodmanConfig, names: list[str], timeout: int = 0) -> list[str]:
    """``podman rm`` of these containers, stopped first if still running (killed after
    ``timeout`` seconds), absent ones ignored: what deleting a pod ends with."""
    return [cfg.binary, "rm", "--force", "--ignore", "--time", str(timeout), *names]
