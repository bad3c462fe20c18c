"""``KubeSpawner.profile_list`` entries that put notebook servers on interLink virtual nodes.

:func:`build_profiles` turns a small validated config (:class:`HubProfiles`) into static
profiles; :func:`interlink_profiles` returns the **live** form, an async callable that offers
only the virtual nodes that are Ready and reach their edge, with their free capacity.
Batch flags (``slurm-job.vk.io/flags``) are built only from the allow-listed choices."""

from __future__ import annotations

import re
import shlex
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator
from tornado import web

from interlink_core.config import StrictModel, build_config
from interlink_core.errors import ConfigError
from interlink_core.names import CONNECTIVITY_CONDITION, VK_TAINT_KEY

FLAGS_ANNOTATION = "slurm-job.vk.io/flags"
GPU_RESOURCE = "nvidia.com/gpu"
# sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
WALLTIME = re.compile(
    r"^(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+|\d+-\d+:\d{2}|\d+-\d+:\d{2}:\d{2})$"
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_UNITS = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)

JSON = dict[str, Any]


def parse_bytes(text: str | int) -> int:
    """``"4GiB"``, ``"4Gi"``, ``"4G"``, ``4294967296`` -> bytes (Kubernetes and human units)."""
    if isinstance(text, int):
        return text
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a memory size; write e.g. 4GiB, 512MiB or 8G")
    return int(Decimal(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def parse_cpu(text: str | float) -> float:
    """Kubernetes CPU quantity (``2``, ``0.5``, ``500m``) -> cores."""
    if isinstance(text, int | float):
        return float(text)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def human_bytes(n: float) -> str:
    """Bytes as GiB (or MiB below one GiB), as the spawn page shows them."""
    if n >= 1024**3:
        return f"{n / 1024**3:.3g} GiB"
    return f"{n / 1024**2:.0f} MiB"


class Resources(StrictModel):
    """One CPU/memory/GPU choice of a profile (requests = limits)."""

    display_name: str | None = None
    cpu: float = Field(gt=0, description="Cores (SLURM --cpus-per-task).")
    memory: int = Field(gt=0, description="Bytes, or a size such as 4GiB (SLURM --mem).")
    gpus: int = Field(default=0, ge=0, description="nvidia.com/gpu (SLURM --gres=gpu:N).")
    default: bool = False

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int:
        return parse_bytes(value)

    @property
    def label(self) -> str:
        text = f"{self.cpu:g} CPU, {human_bytes(self.memory)}"
        if self.gpus:
            text += f", {self.gpus} GPU"
        return self.display_name or text

    @property
    def key(self) -> str:
        return f"{self.cpu:g}cpu-{self.memory // 1024**2}mib-{self.gpus}gpu"

    def override(self) -> JSON:
        """The KubeSpawner settings of this choice."""
        out: JSON = {
            "cpu_guarantee": self.cpu,
            "cpu_limit": self.cpu,
            "mem_guarantee": self.memory,
            "mem_limit": self.memory,
        }
        if self.gpus:
            out["extra_resource_guarantees"] = {GPU_RESOURCE: str(self.gpus)}
            out["extra_resource_limits"] = {GPU_RESOURCE: str(self.gpus)}
        return out


class Profile(StrictModel):
    """One spawn-page entry: a virtual node (``node``), a group of them (``node_labels``), or
    neither (an ordinary in-cluster profile, offered whatever the virtual nodes do)."""

    slug: str = Field(description="Machine name of the profile (lower case, digits, '-').")
    display_name: str
    description: str = ""
    node: str | None = Field(default=None, description="A virtual node's name.")
    node_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of a group of virtual nodes."
    )
    image: str | None = None
    resources: list[Resources] = Field(min_length=1)
    partitions: list[str] = Field(
        default_factory=list, description="Allowed SLURM partitions (--partition); first default."
    )
    walltimes: list[str] = Field(
        default_factory=list, description="Allowed SLURM walltimes (--time); first is default."
    )
    batch_flags: list[str] = Field(
        default_factory=list, description="sbatch flags the admin sets for every spawn (trusted)."
    )
    start_timeout: int = Field(
        default=600, gt=0, description="Seconds a spawn may wait (queue included)."
    )
    connect_host: str | None = Field(
        default=None,
        description="Address the hub dials when the virtual kubelet reports no pod IP "
        "(InterLinkSpawner only): the compute nodes' gateway or tunnel host.",
    )
    free_port: bool = Field(
        default=True,
        description="Pick a free port per spawn: servers sharing a host network never collide.",
    )
    default: bool = False
    kubespawner_override: dict[str, Any] = Field(
        default_factory=dict, description="More KubeSpawner settings (cmd, environment, ...)."
    )

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(f"{value!r} is not a slug; use lower-case letters, digits and '-'")
        return value

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: list[str]) -> list[str]:
        for p in value:
            if not NAME.match(p):
                raise ValueError(f"{p!r} is not a SLURM partition name (letters, digits, _.-)")
        return value

    @field_validator("walltimes")
    @classmethod
    def _walltimes(cls, value: list[str]) -> list[str]:
        for w in value:
            if not WALLTIME.match(w):
                raise ValueError(
                    f"{w!r} is not a SLURM time limit; write HH:MM:SS, D-HH:MM:SS or minutes"
                )
        return value

    @model_validator(mode="after")
    def _target(self) -> Profile:
        if self.node and self.node_labels:
            raise ValueError("give node or node_labels, not both")
        on_vk = bool(self.node or self.node_labels)
        if not on_vk and (self.partitions or self.walltimes or self.batch_flags):
            raise ValueError(
                "partitions, walltimes and batch_flags need a virtual node: set node or node_labels"
            )
        if sum(r.default for r in self.resources) > 1:
            raise ValueError("resources: at most one choice may be the default")
        return self

    @property
    def on_virtual_node(self) -> bool:
        return bool(self.node or self.node_labels)

    def matches(self, node: JSON) -> bool:
        """Whether this profile's pods may land on ``node`` (a Node object)."""
        meta = node.get("metadata") or {}
        if self.node:
            return bool(meta.get("name") == self.node)
        labels = meta.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.node_labels.items())


class HubProfiles(StrictModel):
    """The admin's configuration: the profiles, in spawn-page order."""

    profiles: list[Profile] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> HubProfiles:
        seen: set[str] = set()
        for p in self.profiles:
            if p.slug in seen:
                raise ValueError(f"profiles: slug {p.slug!r} is used twice")
            seen.add(p.slug)
        return self


def load_profiles(config: HubProfiles | Mapping[str, Any] | str | Path) -> HubProfiles:
    """The configuration from a model, a dict, or a YAML file; a :class:`ConfigError` names
    every bad key and says how to fix it."""
    if isinstance(config, HubProfiles):
        return config
    if isinstance(config, str | Path):
        try:
            data = yaml.safe_load(Path(config).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read hub profiles {config}: {exc.strerror}") from None
        return build_config(HubProfiles, data, str(config))
    return build_config(HubProfiles, dict(config), "hub profiles")


# --- choices and the batch annotation ------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """An allow-listed batch choice: option name -> {choice key: sbatch flag}."""

    name: str
    flags: dict[str, str]

    @property
    def default(self) -> str:
        return next(iter(self.flags))


def batch_options(profile: Profile) -> list[Option]:
    """The batch options a user picks on the spawn page for ``profile``."""
    out = []
    if profile.partitions:
        out.append(Option("partition", {p: f"--partition={p}" for p in profile.partitions}))
    if profile.walltimes:
        out.append(Option("walltime", {w: f"--time={w}" for w in profile.walltimes}))
    return out


def choice_error(profile: str, option: str, value: object, allowed: list[str]) -> ValueError:
    """The message a user sees for a choice the site does not allow."""
    return ValueError(
        f"{option}: {value!r} is not allowed for profile {profile!r}; "
        f"choose one of: {', '.join(allowed)}"
    )


def check_choices(profile: JSON, user_options: Mapping[str, Any]) -> None:
    """Refuse any choice of ``profile`` (a profile_list entry) outside its ``choices``, and
    free-form values where none are allowed, naming the allowed values."""
    for name, option in (profile.get("profile_options") or {}).items():
        choices = option.get("choices") or {}
        unlisted = user_options.get(f"{name}--unlisted-choice")
        if unlisted and not (option.get("unlisted_choice") or {}).get("enabled"):
            raise choice_error(profile["slug"], name, unlisted, list(choices))
        value = user_options.get(name)
        if value and value not in choices:
            raise choice_error(profile["slug"], name, value, list(choices))


@dataclass(frozen=True)
class BatchAnnotations:
    """A ``kubespawner_override`` value: the pod's annotations, with ``slurm-job.vk.io/flags``
    built from the admin's flags and the user's allow-listed choices (each flag quoted)."""

    profile: str
    options: tuple[Option, ...]
    fixed: tuple[str, ...] = ()

    def flags(self, user_options: Mapping[str, Any]) -> list[str]:
        """The sbatch flags for these choices (defaults where the user chose nothing)."""
        out = list(self.fixed)
        for option in self.options:
            if user_options.get(f"{option.name}--unlisted-choice"):
                raise choice_error(
                    self.profile,
                    option.name,
                    user_options[f"{option.name}--unlisted-choice"],
                    list(option.flags),
                )
            value = user_options.get(option.name) or option.default
            if value not in option.flags:
                raise choice_error(self.profile, option.name, value, list(option.flags))
            out.append(option.flags[value])
        return out

    def __call__(self, spawner: Any) -> dict[str, str]:
        flags = self.flags(getattr(spawner, "user_options", None) or {})
        return {FLAGS_ANNOTATION: " ".join(shlex.quote(f) for f in flags)} if flags else {}


def random_port(spawner: Any = None) -> int:
    """A ``kubespawner_override`` value for ``port``: a port free on this host, new per spawn
    (servers of jobs that share a host network must not collide)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


# --- profiles ------------------------------------------------------------------------------------


def profile_entry(profile: Profile, extra_description: str = "") -> JSON:
    """One ``profile_list`` entry for ``profile``."""
    override: JSON = {"start_timeout": profile.start_timeout}
    if profile.image:
        override["image"] = profile.image
    if profile.on_virtual_node:
        override["node_selector"] = (
            {"kubernetes.io/hostname": profile.node} if profile.node else dict(profile.node_labels)
        )
        override["tolerations"] = [
            {"key": VK_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
        ]
        override["extra_annotations"] = BatchAnnotations(
            profile.slug, tuple(batch_options(profile)), tuple(profile.batch_flags)
        )
    if profile.free_port:
        override["port"] = random_port
    if profile.connect_host:
        override["interlink_connect_host"] = profile.connect_host
    override.update(profile.kubespawner_override)

    default_resources = next((r for r in profile.resources if r.default), profile.resources[0])
    options: JSON = {
        "resources": {
            "display_name": "Resources",
            "choices": {
                r.key: {
                    "display_name": r.label,
                    "default": r is default_resources,
                    "kubespawner_override": r.override(),
                }
                for r in profile.resources
            },
        }
    }
    for option in batch_options(profile):
        # the flags come from BatchAnnotations; a choice only has to exist to be allowed
        options[option.name] = {
            "display_name": option.name.capitalize(),
            "choices": {
                key: {"display_name": key, "default": key == option.default} for key in option.flags
            },
        }
    description = " · ".join(d for d in (profile.description, extra_description) if d)
    return {
        "slug": profile.slug,
        "display_name": profile.display_name,
        "description": description,
        "default": profile.default,
        "kubespawner_override": override,
        "profile_options": options,
    }


def build_profiles(config: HubProfiles | Mapping[str, Any] | str | Path) -> list[JSON]:
    """Static ``KubeSpawner.profile_list`` from the configuration."""
    return [profile_entry(p) for p in load_profiles(config).profiles]


# --- the live form -------------------------------------------------------------------------------


def node_usable(node: JSON) -> bool:
    """Ready, and its virtual kubelet reaches the edge (``InterLinkConnectivity`` True)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    conds = {c.get("type"): c.get("status") for c in conditions}
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    return conds.get("Ready") == "True" and conds.get(CONNECTIVITY_CONDITION) == "True"


def _requests(pod: JSON) -> tuple[float, int, int]:
    cpu, mem, gpu = 0.0, 0, 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        lim = (c.get("resources") or {}).get("limits") or {}
        cpu += parse_cpu(req.get("cpu") or lim.get("cpu") or 0)
        mem += parse_bytes(req.get("memory") or lim.get("memory") or 0)
        gpu += int(req.get(GPU_RESOURCE) or lim.get(GPU_RESOURCE) or 0)
    return cpu, mem, gpu


def free_capacity(node: JSON, pods: list[JSON] | None) -> str:
    """``free: 30 CPU, 120 GiB, 2 GPU`` from the node's allocatable minus its pods' requests
    (``None`` pods: the node's capacity, ``of`` instead of ``free``)."""
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    cpu = parse_cpu(alloc.get("cpu") or 0)
    mem = parse_bytes(alloc.get("memory") or 0)
    gpu = int(alloc.get(GPU_RESOURCE) or 0)
    word = "capacity"
    if pods is not None:
        word = "free"
        for pod in pods:
            c, m, g = _requests(pod)
            cpu, mem, gpu = cpu - c, mem - m, gpu - g
    text = f"{word}: {max(cpu, 0):g} CPU, {human_bytes(max(mem, 0))}"
    return text + (f", {max(gpu, 0)} GPU" if gpu or alloc.get(GPU_RESOURCE) else "")


def live_profiles(
    config: HubProfiles, nodes: list[JSON], pods: Mapping[str, list[JSON] | None]
) -> list[JSON]:
    """The profiles to offer now: in-cluster ones always, virtual-node ones only when one of
    their nodes is usable; the description gains the node's free capacity."""
    usable = [n for n in nodes if node_usable(n)]
    out = []
    for profile in config.profiles:
        if not profile.on_virtual_node:
            out.append(profile_entry(profile))
            continue
        mine = [n for n in usable if profile.matches(n)]
        if not mine:
            continue
        capacity = "; ".join(
            f"{n['metadata']['name']} {free_capacity(n, pods.get(n['metadata']['name']))}"
            for n in mine
        )
        out.append(profile_entry(profile, capacity))
    if out and not any(p["default"] for p in out):
        out[0]["default"] = True
    return out


class NoVirtualNodeReady(web.HTTPError):  # type: ignore[misc]
    """No profile can be offered: every virtual node is down and there is no other profile
    (the hub shows the message on the spawn page, with status 503)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "%s", message)


ApiFactory = Callable[[], Awaitable[Any]]


def interlink_profiles(
    config: HubProfiles | Mapping[str, Any] | str | Path,
    *,
    kubeconfig: str | Path | None = None,
    api: ApiFactory | None = None,
) -> Callable[[Any], Awaitable[list[JSON]]]:
    """The live form: ``c.KubeSpawner.profile_list = interlink_profiles(config)``.

    At spawn time it lists the interLink virtual nodes (one ``GET nodes`` with the VK label
    selector, and one pod list per usable node for its free capacity) and offers only the
    profiles whose node is Ready and connected to its edge. The hub needs ``list`` on
    ``nodes`` and ``pods`` cluster-wide (without the pod right the description shows the
    capacity instead of what is free). ``kubeconfig``: default in-cluster or ``$KUBECONFIG``."""
    cfg = load_profiles(config)

    async def default_api() -> Any:
        import kr8s.asyncio

        return await kr8s.asyncio.api(kubeconfig=str(kubeconfig) if kubeconfig else None)

    async def profile_list(spawner: Any = None) -> list[JSON]:
        from .nodes import list_virtual_nodes

        nodes, pods = await list_virtual_nodes(await (api or default_api)())
        offered = live_profiles(cfg, nodes, pods)
        if not offered:
            names = ", ".join(n["metadata"]["name"] for n in nodes) or "none"
            raise NoVirtualNodeReady(
                "no profile can be offered right now: no virtual node of the configured "
                f"profiles is Ready and connected to its edge (virtual nodes: {names}); "
                "try again later or ask your hub administrator"
            )
        return offered

    return profile_list
