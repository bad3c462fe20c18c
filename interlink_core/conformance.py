"""What each backend and runtime does with each pod-spec field, compared with a kubelet.

One table (:data:`ROWS`) says, per field and per column (backend and runtime, :data:`COLUMNS`),
whether the field is **honoured** (as a kubelet does), **refused** (the create fails with a 400
naming the field) or **not enforced** (accepted; a Warning Event on the pod says what was
ignored). Plugins call :func:`check` at submit: it raises :class:`BadRequest` naming every
refused field the pod sets and returns the Events for the not-enforced fields it sets. A field
at its Kubernetes default (what the API server fills in) counts as not set, so ordinary pods
get no Events for it.

:func:`render` writes the table as Markdown; ``docs/pod-conformance.md`` holds it (a unit test
rebuilds and compares it; ``python -m interlink_core.conformance docs/pod-conformance.md``
rewrites it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import BadRequest
from .models import JSON

Kind = Literal["honoured", "refused", "ignored"]
Scope = Literal["pod", "container", "volume"]

NOT_ENFORCED = "FieldNotEnforced"
"""The reason of the Warning Event for a not-enforced field the pod sets."""

COLUMNS: dict[str, str] = {
    "local/host": "local host",
    "local/podman": "local podman",
    "slurm/host": "SLURM host",
    "slurm/podman": "SLURM podman",
    "slurm/apptainer": "SLURM apptainer",
    "slurm/enroot": "SLURM enroot",
    "htcondor/host": "HTCondor host",
    "htcondor/apptainer": "HTCondor apptainer",
}
"""Column id (``backend/runtime``) → its heading. Singularity behaves as Apptainer."""

HOST = ("local/host", "slurm/host", "htcondor/host")
PODMAN = ("local/podman", "slurm/podman")
APPTAINER = ("slurm/apptainer", "htcondor/apptainer")
IMAGES = (*PODMAN, *APPTAINER, "slurm/enroot")
"""The columns that run the container's image."""
SLURM = ("slurm/host", "slurm/podman", "slurm/apptainer", "slurm/enroot")
HTCONDOR = ("htcondor/host", "htcondor/apptainer")
SUPERVISED = ("local/host", "local/podman", *SLURM)
"""The columns whose jobs run the pod runner (probes, hooks, restarts)."""

SCHEDULING_FIELDS = (
    "nodeName",
    "nodeSelector",
    "affinity",
    "tolerations",
    "schedulerName",
    "priorityClassName",
    "priority",
    "preemptionPolicy",
    "topologySpreadConstraints",
    "schedulingGates",
    "overhead",
)
"""Pod fields Kubernetes honours before the pod reaches a node (scheduling and admission)."""


@dataclass(frozen=True)
class Verdict:
    """What one column does with one field; ``text`` says how (honoured) or why (else)."""

    kind: Kind
    text: str = ""

    def cell(self) -> str:
        """The Markdown table cell (the kind only: the text goes in the notes)."""
        return {"honoured": "honoured", "refused": "**refused**", "ignored": "Event"}[self.kind]


def honoured(text: str = "") -> Verdict:
    """As a kubelet does (``text``: how)."""
    return Verdict("honoured", text)


def refused(why: str) -> Verdict:
    """A 400 naming the field."""
    return Verdict("refused", why)


def ignored(why: str) -> Verdict:
    """Accepted with a Warning Event saying ``why`` (and what to do)."""
    return Verdict("ignored", why)


def _truthy(value: Any) -> bool:
    return bool(value)


@dataclass(frozen=True)
class Row:
    """One pod-spec field: where it is, when the pod sets it, what each column does."""

    label: str
    """As the table shows it (Markdown)."""
    scope: Scope
    path: str
    """Dotted path under the pod's ``spec``, a container or a volume (``*``: a catch-all for
    the volume types no other row names)."""
    default: Verdict
    cells: dict[str, Verdict] = field(default_factory=dict)
    is_set: Callable[[Any], bool] = _truthy
    """Whether the value means something beyond the Kubernetes default."""
    reason: str = NOT_ENFORCED
    message: Callable[[Any], str] | None = None
    """For not-enforced fields: the Event's whole text after the field path (else a generic
    one from the verdict)."""
    checked_elsewhere: bool = False
    """The plugin's own code refuses it (with its own message): :func:`check` skips it."""
    applies: Callable[[JSON], bool] = lambda spec: True
    """Pod fields: whether the row is about this pod (its ``spec``) at all."""

    def verdict(self, column: str) -> Verdict:
        """This row's verdict in ``column``."""
        return self.cells.get(column, self.default)


def _cells(*pairs: tuple[tuple[str, ...], Verdict]) -> dict[str, Verdict]:
    out: dict[str, Verdict] = {}
    for columns, verdict in pairs:
        out.update(dict.fromkeys(columns, verdict))
    return out


def _not(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value is not None and value not in values


def _one_of(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value in values


def _read_only(mounts: Any) -> bool:
    return bool(_read_only_mounts(mounts))


def _read_only_mounts(mounts: Any) -> list[str]:
    return [
        f"{vm.get('name')} at {vm.get('mountPath')}"
        for vm in mounts or []
        if isinstance(vm, dict) and vm.get("readOnly")
    ]


def _read_only_message(mounts: Any) -> str:
    return (
        "readOnly is not enforced by this node's runtime (host: the container runs as a "
        f"process on the host and can write to {', '.join(_read_only_mounts(mounts))}); ask "
        "for a node with a container runtime where it must hold"
    )


def _propagation(mounts: Any) -> bool:
    return any(
        isinstance(vm, dict) and vm.get("mountPropagation") not in (None, "None")
        for vm in mounts or []
    )


def _mapped_host_port(ports: Any) -> bool:
    return any(
        isinstance(p, dict) and p.get("hostPort") and p.get("hostPort") != p.get("containerPort")
        for p in ports or []
    )


def _gpus(resources: Any) -> bool:
    if not isinstance(resources, dict):
        return False
    return any(
        str((resources.get(kind) or {}).get("nvidia.com/gpu", "0")) not in ("0", "")
        for kind in ("limits", "requests")
    )


def _restart_on_resize(policies: Any) -> bool:
    return any(
        isinstance(p, dict) and p.get("restartPolicy") == "RestartContainer" for p in policies or []
    )


def _without_command(c: Any) -> bool:
    return isinstance(c, dict) and not c.get("command") and not c.get("args")


def _has_capabilities(caps: Any) -> bool:
    return isinstance(caps, dict) and bool(caps.get("add") or caps.get("drop"))


def _plain(spec: JSON) -> bool:
    """A pod SLURM runs without the pod runner (``restartPolicy: Never``, no probe or hook)."""
    supervised = ("startupProbe", "livenessProbe", "readinessProbe", "lifecycle")
    return spec.get("restartPolicy") == "Never" and not any(
        c.get(key) for _, c in _spec_containers(spec) for key in supervised
    )


_GRACE = {
    "local/host": honoured("the pod runner; capped by the plugin's max_grace_seconds"),
    "local/podman": honoured("the pod runner; capped by the plugin's max_grace_seconds"),
    **_cells((HTCONDOR, ignored("HTCondor's own kill timeout applies on delete (condor_rm)"))),
}
_NODE_DNS = ignored(
    "containers use the node's resolver (its /etc/resolv.conf, as with dnsPolicy Default); "
    "use fully qualified names the node can resolve"
)
_NODE_NAME = ignored(
    "containers see the node's hostname; read the pod's name from the downward API instead"
)
_NO_USER = "the container runs as the {who}'s user; use a node with runtime podman"
_USER = _cells(
    (("local/host",), ignored(_NO_USER.format(who="plugin"))),
    ((*SLURM, *HTCONDOR), ignored(_NO_USER.format(who="batch job"))),
    (PODMAN, honoured("`--user`")),
)
_SHARED_HOST = _cells(
    (HOST, honoured("the containers are processes of the node")),
    (
        PODMAN,
        ignored(
            "podman gives each container namespaces of its own; use a node with another "
            "runtime if the containers must see the node's"
        ),
    ),
    (
        (*APPTAINER, "slurm/enroot"),
        honoured("the tool keeps the node's namespace (as documented; untested here)"),
    ),
)
_UNSECURED = ignored(
    "no runtime here applies it; run only what you would run without it, or ask the site"
)
_REFUSED_VOLUME = refused(
    "no volume plugin runs on a batch node; use hostPath for a site file system, or "
    "configMap, secret, emptyDir"
)
_SERVICE_ACCOUNT = honoured("the VK requests the projected token (see the VK's page)")

_POD_ROWS = (
    Row(
        "`hostNetwork: true`",
        "pod",
        "hostNetwork",
        honoured("every pod here uses the node's network"),
        {
            "local/host": honoured(
                "the host's network (the pod IP is a loopback address of its own)"
            ),
            **_cells(
                (PODMAN, honoured("`--network host`, the default of the site's podman.network"))
            ),
        },
    ),
    Row("`hostPID: true`", "pod", "hostPID", _UNSECURED, _SHARED_HOST),
    Row("`hostIPC: true`", "pod", "hostIPC", _UNSECURED, _SHARED_HOST),
    Row("`shareProcessNamespace: true`", "pod", "shareProcessNamespace", _UNSECURED, _SHARED_HOST),
    Row(
        "`hostUsers: false`",
        "pod",
        "hostUsers",
        ignored("no user namespace is made for the pod"),
        is_set=_one_of(False),
    ),
    Row(
        "`dnsPolicy` `None` / `ClusterFirstWithHostNet`",
        "pod",
        "dnsPolicy",
        _NODE_DNS,
        is_set=_one_of("None", "ClusterFirstWithHostNet"),
    ),
    Row("`dnsConfig`", "pod", "dnsConfig", _NODE_DNS),
    Row(
        "`hostAliases`",
        "pod",
        "hostAliases",
        ignored("containers see the node's /etc/hosts; use addresses or names the node resolves"),
    ),
    Row("`hostname`", "pod", "hostname", _NODE_NAME),
    Row("`subdomain`", "pod", "subdomain", _NODE_NAME),
    Row("`setHostnameAsFQDN`", "pod", "setHostnameAsFQDN", _NODE_NAME),
    Row(
        "`securityContext.runAsUser`",
        "pod",
        "securityContext.runAsUser",
        _UNSECURED,
        _USER,
        is_set=lambda v: v is not None,
    ),
    Row(
        "`securityContext.runAsGroup`",
        "pod",
        "securityContext.runAsGroup",
        _UNSECURED,
        _USER,
        is_set=lambda v: v is not None,
    ),
    Row(
        "`securityContext.runAsNonRoot`",
        "pod",
        "securityContext.runAsNonRoot",
        ignored("nothing checks that the container's user is not root"),
    ),
    Row(
        "`securityContext.fsGroup`",
        "pod",
        "securityContext.fsGroup",
        ignored("volume files keep the job's group"),
        is_set=lambda v: v is not None,
    ),
    Row(
        "`securityContext.supplementalGroups`",
        "pod",
        "securityContext.supplementalGroups",
        ignored("the container has the groups of the user it runs as"),
    ),
    Row(
        "`securityContext.sysctls`",
        "pod",
        "securityContext.sysctls",
        ignored("the node's kernel settings apply; ask the site"),
    ),
    Row("`securityContext.seccompProfile`", "pod", "securityContext.seccompProfile", _UNSECURED),
    Row("`securityContext.seLinuxOptions`", "pod", "securityContext.seLinuxOptions", _UNSECURED),
    Row("`securityContext.appArmorProfile`", "pod", "securityContext.appArmorProfile", _UNSECURED),
    Row(
        "`activeDeadlineSeconds`",
        "pod",
        "activeDeadlineSeconds",
        ignored(
            "the pod is not ended when it passes; use the batch system's time limit (SLURM: "
            "--time in the slurm-job.vk.io/flags annotation, where the site allows it)"
        ),
        is_set=lambda v: v is not None,
    ),
    Row(
        "`terminationGracePeriodSeconds` (a pod with probes, hooks or restarts)",
        "pod",
        "terminationGracePeriodSeconds",
        honoured("the pod runner: SIGTERM, then SIGKILL after the grace period"),
        _GRACE,
        is_set=_not(30),
        applies=lambda spec: not _plain(spec),
    ),
    Row(
        "`terminationGracePeriodSeconds` (`restartPolicy: Never`, no probes or hooks)",
        "pod",
        "terminationGracePeriodSeconds",
        ignored(
            "the job gets SIGTERM, then SIGKILL after SLURM's KillWait (podman: the site's "
            "podman.stop_timeout); give the pod a probe or restartPolicy OnFailure to have "
            "the grace period kept"
        ),
        _GRACE,
        is_set=_not(30),
        applies=_plain,
    ),
    Row(
        "`restartPolicy: OnFailure`",
        "pod",
        "restartPolicy",
        honoured("the pod runner"),
        _cells(
            (
                HTCONDOR,
                ignored(
                    "HTCondor jobs do not restart containers (as Never); use the local or "
                    "SLURM node"
                ),
            )
        ),
        is_set=_one_of("OnFailure"),
    ),
    Row(
        "`readinessGates`",
        "pod",
        "readinessGates",
        ignored("the pod's Ready condition follows its containers only"),
    ),
    Row(
        "`ephemeralContainers`",
        "pod",
        "ephemeralContainers",
        ignored("kubectl debug containers are not started on a virtual node"),
    ),
    Row(
        "`runtimeClassName`",
        "pod",
        "runtimeClassName",
        ignored("the node runs every pod with the site's runtime (the column)"),
    ),
    Row(
        "`os.name` other than `linux`",
        "pod",
        "os.name",
        refused("these nodes run Linux containers"),
        is_set=_not("linux"),
    ),
    Row(
        "`resourceClaims`",
        "pod",
        "resourceClaims",
        refused(
            "dynamic resource allocation has no counterpart on a batch node; ask for devices "
            "through resources.limits"
        ),
    ),
    Row(
        "`imagePullSecrets`",
        "pod",
        "imagePullSecrets",
        ignored(
            "images come from the node's image store or registries with the site's credentials"
        ),
        _cells((HOST, ignored("no image is pulled: the command runs on the node"))),
    ),
    Row("`serviceAccountName`", "pod", "serviceAccountName", _SERVICE_ACCOUNT),
    Row("`automountServiceAccountToken`", "pod", "automountServiceAccountToken", _SERVICE_ACCOUNT),
)

_VOLUME_ROWS = (
    Row(
        "`configMap`, `secret`, `downwardAPI`",
        "volume",
        "configMap",
        honoured("written as files for the pod"),
        is_set=lambda v: False,
    ),
    Row(
        "`projected`",
        "volume",
        "projected",
        honoured("written as files; service-account tokens from the VK"),
        is_set=lambda v: False,
    ),
    Row(
        "`emptyDir`",
        "volume",
        "emptyDir",
        honoured("a directory of the pod"),
        is_set=lambda v: False,
    ),
    Row(
        "`emptyDir.medium: Memory`",
        "volume",
        "emptyDir.medium",
        ignored("the volume is a directory on the node's disk, not a tmpfs"),
        is_set=_one_of("Memory"),
    ),
    Row(
        "`emptyDir.sizeLimit`",
        "volume",
        "emptyDir.sizeLimit",
        ignored("nothing evicts the pod when the directory grows past it"),
    ),
    Row(
        "`hostPath`",
        "volume",
        "hostPath",
        honoured("the node's path, below one of the plugin's `host_path_prefixes` (else refused)"),
        is_set=lambda v: False,
    ),
    Row(
        "any other type (`persistentVolumeClaim`, `nfs`, `csi`, `ephemeral`, `image`, "
        "`gitRepo`, ...)",
        "volume",
        "*",
        _REFUSED_VOLUME,
    ),
)

_KNOWN_VOLUMES = frozenset(
    {"name", "configMap", "secret", "downwardAPI", "projected", "emptyDir", "hostPath"}
)

_CONTAINER_ROWS = (
    Row(
        "`image`",
        "container",
        "image",
        honoured(),
        {
            **_cells(
                (
                    HOST,
                    ignored(
                        "the command runs on the node's own system, not in the image; ask for "
                        "a node with a container runtime if it needs the image's files"
                    ),
                )
            ),
            "slurm/apptainer": honoured("`docker://` prefix"),
            "htcondor/apptainer": honoured("`docker://` prefix"),
            "slurm/enroot": honoured("imported"),
        },
    ),
    Row(
        "`imagePullPolicy: Never`",
        "container",
        "imagePullPolicy",
        ignored(
            "a missing image is pulled (Always is taken as IfNotPresent, without an Event: the "
            "API server sets it for :latest images)"
        ),
        _cells((HOST, honoured("no image is pulled"))),
        is_set=_one_of("Never"),
    ),
    Row(
        "neither `command` nor `args`",
        "container",
        "",
        honoured(),
        {
            **_cells((HOST, refused("there is no image entrypoint; give command"))),
            **_cells((PODMAN, honoured("image ENTRYPOINT + CMD"))),
            **_cells((APPTAINER, honoured("`apptainer run` (the runscript)"))),
            "slurm/enroot": honoured("the image's entrypoint"),
        },
        is_set=_without_command,
        checked_elsewhere=True,
    ),
    Row(
        "`command` / `args`, `$(VAR)` in them",
        "container",
        "command",
        honoured(),
        is_set=lambda v: False,
    ),
    Row(
        "`env`, `envFrom`",
        "container",
        "env",
        honoured(),
        _cells(
            (APPTAINER, honoured("env file; shell names only, else refused")),
        ),
        is_set=lambda v: False,
    ),
    Row(
        "`workingDir`",
        "container",
        "workingDir",
        honoured(),
        {
            "local/host": honoured("if under a mount or existing on the host, else refused"),
            "slurm/host": honoured("path rewritten, created"),
            "htcondor/host": honoured("path rewritten, created"),
            "slurm/enroot": refused("enroot cannot set it; cd in the command"),
        },
        is_set=lambda v: False,
        checked_elsewhere=True,
    ),
    Row(
        "`volumeMounts`",
        "container",
        "volumeMounts",
        honoured(),
        _cells(
            (HOST, honoured("paths rewritten (see the plugin's page)")),
            (PODMAN, honoured("bind mounts")),
        ),
        is_set=lambda v: False,
    ),
    Row(
        "`volumeMounts[].readOnly`",
        "container",
        "volumeMounts",
        honoured("`:ro`"),
        _cells(
            (HOST, ignored("the container runs as a process on the host and can write there")),
        ),
        is_set=_read_only,
        reason="ReadOnlyNotEnforced",
        message=_read_only_message,
    ),
    Row(
        "`volumeMounts[].mountPropagation`",
        "container",
        "volumeMounts",
        ignored("mounts are private to the container"),
        is_set=_propagation,
    ),
    Row(
        "`resources.requests`",
        "container",
        "resources.requests",
        honoured("the scheduler counts them against the node's capacity"),
        is_set=lambda v: False,
    ),
    Row(
        "`resources.limits.memory`",
        "container",
        "resources.limits.memory",
        honoured("`--mem` for the job (enforced if the site's SLURM constrains RAM)"),
        {
            "local/host": ignored(
                "the process has no memory limit; use a node with runtime podman"
            ),
            **_cells((PODMAN, honoured("`--memory`, no swap; `OOMKilled`, 137"))),
            **_cells((HTCONDOR, honoured("`request_memory` (the site's policy enforces it)"))),
        },
        is_set=lambda v: v is not None,
    ),
    Row(
        "`resources.limits.cpu`",
        "container",
        "resources.limits.cpu",
        honoured("`--cpus-per-task`"),
        {
            "local/host": ignored(
                "the process may use every CPU of the host; use a node with runtime podman"
            ),
            "local/podman": honoured("`--cpus`"),
            "slurm/podman": honoured("`--cpus` + `--cpus-per-task`"),
            **_cells((HTCONDOR, honoured("`request_cpus`"))),
        },
        is_set=lambda v: v is not None,
    ),
    Row(
        "`nvidia.com/gpu`",
        "container",
        "resources",
        honoured("`--gres=gpu:N`"),
        {
            **_cells(
                (
                    ("local/host", "local/podman"),
                    ignored("no GPU is assigned to the pod; use the SLURM or HTCondor node"),
                )
            ),
            **_cells((HTCONDOR, honoured("`request_gpus`"))),
        },
        is_set=_gpus,
    ),
    Row(
        "`securityContext.runAsUser`",
        "container",
        "securityContext.runAsUser",
        _UNSECURED,
        _USER,
        is_set=lambda v: v is not None,
    ),
    Row(
        "`securityContext.runAsGroup`",
        "container",
        "securityContext.runAsGroup",
        _UNSECURED,
        _USER,
        is_set=lambda v: v is not None,
    ),
    Row(
        "`securityContext.runAsNonRoot`",
        "container",
        "securityContext.runAsNonRoot",
        ignored("nothing checks that the container's user is not root"),
    ),
    Row(
        "`securityContext.privileged`",
        "container",
        "securityContext.privileged",
        refused("containers here never run privileged"),
    ),
    Row(
        "`securityContext.capabilities`",
        "container",
        "securityContext.capabilities",
        ignored(
            "the container keeps the capabilities of the user it runs as (none added, none dropped)"
        ),
        is_set=_has_capabilities,
    ),
    Row(
        "`securityContext.allowPrivilegeEscalation: false`",
        "container",
        "securityContext.allowPrivilegeEscalation",
        _UNSECURED,
        _cells(
            (
                APPTAINER,
                honoured("Apptainer always sets no_new_privs (as documented; untested here)"),
            )
        ),
        is_set=_one_of(False),
    ),
    Row(
        "`securityContext.readOnlyRootFilesystem`",
        "container",
        "securityContext.readOnlyRootFilesystem",
        ignored("the container's root file system is writable"),
        _cells(
            (HOST, ignored("the container runs on the node's own file system")),
            (APPTAINER, honoured("SIF images are read-only (as documented; untested here)")),
        ),
    ),
    Row(
        "`securityContext.seccompProfile`",
        "container",
        "securityContext.seccompProfile",
        _UNSECURED,
    ),
    Row(
        "`securityContext.seLinuxOptions`",
        "container",
        "securityContext.seLinuxOptions",
        _UNSECURED,
    ),
    Row(
        "`securityContext.appArmorProfile`",
        "container",
        "securityContext.appArmorProfile",
        _UNSECURED,
    ),
    Row(
        "`stdin` (and `stdinOnce`)",
        "container",
        "stdin",
        ignored("no standard input or terminal is attached (kubectl attach is not supported)"),
    ),
    Row(
        "`tty`",
        "container",
        "tty",
        ignored("no standard input or terminal is attached (kubectl attach is not supported)"),
    ),
    Row(
        "`terminationMessagePath` other than `/dev/termination-log`",
        "container",
        "terminationMessagePath",
        ignored("the termination message is not read; the pod's message says how it ended"),
        is_set=_not("/dev/termination-log"),
    ),
    Row(
        "`terminationMessagePolicy: FallbackToLogsOnError`",
        "container",
        "terminationMessagePolicy",
        ignored("the termination message is not read; kubectl logs shows the log"),
        is_set=_one_of("FallbackToLogsOnError"),
    ),
    Row(
        "`ports`",
        "container",
        "ports",
        honoured("informational, as for a kubelet: the port opens on the pod's network"),
        is_set=lambda v: False,
    ),
    Row(
        "`ports[].hostPort` other than `containerPort`",
        "container",
        "ports",
        ignored("no port is mapped: the container's port opens on the node's network as it is"),
        is_set=_mapped_host_port,
    ),
    Row(
        "`resizePolicy` `RestartContainer`",
        "container",
        "resizePolicy",
        ignored("a batch job's resources cannot change once it runs"),
        is_set=_restart_on_resize,
    ),
    Row(
        "`restartPolicy: Always` (sidecar init container)",
        "container",
        "restartPolicy",
        refused(
            "init containers run one after another to the end before the containers; "
            "make it a regular container"
        ),
        is_set=_one_of("Always"),
    ),
    Row(
        "`volumeDevices`",
        "container",
        "volumeDevices",
        refused("block devices come from persistent volumes, which no batch node has"),
    ),
    Row(
        "probes, `lifecycle` hooks",
        "container",
        "lifecycle",
        honoured("the pod runner"),
        _cells((HTCONDOR, refused("its jobs are not supervised"))),
        checked_elsewhere=True,
    ),
)

ROWS: tuple[Row, ...] = (*_POD_ROWS, *_VOLUME_ROWS, *_CONTAINER_ROWS)
"""Every field the table covers, pod fields first, then volumes, then containers."""


def column(backend: str, runtime: str) -> str:
    """The column id of a backend and runtime (Singularity as Apptainer)."""
    runtime = "apptainer" if runtime == "singularity" else runtime
    key = f"{backend}/{runtime}"
    if key not in COLUMNS:
        raise ValueError(f"no conformance column for backend {backend!r}, runtime {runtime!r}")
    return key


def _get(obj: Any, path: str) -> Any:
    for part in path.split(".") if path else ():
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _spec_containers(spec: JSON) -> Iterator[tuple[str, JSON]]:
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            if isinstance(c, dict):
                yield f"spec.{key}[{i}]", c


def _findings(pod: JSON, row: Row) -> Iterator[tuple[str, str, Any]]:
    """``(field path, container name, value)`` wherever the pod sets ``row``'s field."""
    spec = pod.get("spec") or {}
    if row.scope == "pod":
        value = _get(spec, row.path)
        if row.applies(spec) and row.is_set(value):
            yield f"spec.{row.path}", "", value
    elif row.scope == "volume":
        for i, vol in enumerate(spec.get("volumes") or []):
            if not isinstance(vol, dict):
                continue
            if row.path == "*":
                for kind in sorted(set(vol) - _KNOWN_VOLUMES):
                    yield f"spec.volumes[{i}].{kind}", "", vol[kind]
            elif row.is_set(value := _get(vol, row.path)):
                yield f"spec.volumes[{i}].{row.path}", "", value
    else:
        for where, c in _spec_containers(spec):
            if row.path == "restartPolicy" and not where.startswith("spec.initContainers"):
                continue  # a container's restartPolicy only means something on init containers
            value = _get(c, row.path) if row.path else c
            if row.is_set(value):
                path = f"{where}.{row.path}" if row.path else where
                yield path, str(c.get("name", "")), value


def check(pod: JSON, backend: str, runtime: str) -> list[tuple[str, str, str]]:
    """The Warning Events (``(container, reason, message)``) for the not-enforced fields the
    pod sets on this backend and runtime; a :class:`BadRequest` naming every refused field it
    sets instead, if any."""
    col = column(backend, runtime)
    node = f"{backend}, runtime {runtime}"
    refusals: list[str] = []
    events: list[tuple[str, str, str]] = []
    for row in ROWS:
        verdict = row.verdict(col)
        if verdict.kind == "honoured" or row.checked_elsewhere:
            continue
        for path, container, value in _findings(pod, row):
            if verdict.kind == "refused":
                refusals.append(f"{path}: not supported on this node ({node}): {verdict.text}")
            elif row.message is not None:
                events.append((container, row.reason, f"{path}: {row.message(value)}"))
            else:
                text = f"{path}: not enforced on this node ({node}): {verdict.text}"
                events.append((container, row.reason, text))
    if refusals:
        raise BadRequest("; ".join(refusals))
    return events


# --- the Markdown table --------------------------------------------------------------------

BEGIN = "<!-- conformance table: generated by interlink_core.conformance, do not edit -->"
END = "<!-- end of the conformance table -->"
_TITLES = {
    "pod": "Pod fields (`spec.*`)",
    "volume": "Volumes (`spec.volumes[]`)",
    "container": "Containers and init containers (`spec.containers[]`, `spec.initContainers[]`)",
}


def _notes(row: Row) -> str:
    """One note per distinct verdict text of the row, naming its columns unless all share it."""
    by_text: dict[str, list[str]] = {}
    for col in COLUMNS:
        text = row.verdict(col).text
        if text:
            by_text.setdefault(text, []).append(COLUMNS[col])
    if len(by_text) == 1 and len(next(iter(by_text.values()))) == len(COLUMNS):
        return next(iter(by_text))
    return "; ".join(f"{', '.join(cols)}: {text}" for text, cols in by_text.items())


def render() -> str:
    """The conformance tables as Markdown, between :data:`BEGIN` and :data:`END`."""
    lines = [BEGIN, ""]
    for scope in ("pod", "volume", "container"):
        lines += [f"### {_TITLES[scope]}", ""]
        lines.append("| field | " + " | ".join(COLUMNS.values()) + " | notes |")
        lines.append("|---" * (len(COLUMNS) + 2) + "|")
        for row in ROWS:
            if row.scope == scope:
                cells = [row.verdict(c).cell() for c in COLUMNS]
                notes = _notes(row).replace("|", "\\|")
                lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {notes} |")
        lines.append("")
    fields = ", ".join(f"`{f}`" for f in SCHEDULING_FIELDS)
    lines += [
        f"Honoured by Kubernetes before the pod reaches a node: {fields} (scheduling and "
        "admission; nothing is left for the node to do).",
        "",
        END,
    ]
    return "\n".join(lines)


def replace_table(text: str) -> str:
    """``text`` (a Markdown page) with its conformance table replaced by :func:`render`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("the page has no conformance table markers")
    return text[:start] + render() + text[end + len(END) :]


def main(argv: list[str]) -> int:
    """``python -m interlink_core.conformance PAGE``: rewrite the table in PAGE."""
    if len(argv) != 1:
        print("usage: python -m interlink_core.conformance docs/pod-conformance.md")
        return 2
    with open(argv[0]) as fh:
        text = fh.read()
    with open(argv[0], "w") as fh:
        fh.write(replace_table(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
