"""Wire models of the interLink protocol, field for field compatible with upstream interLink.

Kubernetes objects (pods, ConfigMaps, Secrets, container statuses) stay plain JSON dicts in their
normal camelCase form. Upstream is written in Go, so on input we accept its quirks: ``null`` for
an empty list, the zero time ``0001-01-01T00:00:00Z`` for "no time", ``LimitBytes`` as an alias of
``Bytes``. On output we emit the upstream form (see :func:`dump`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from typing_extensions import TypedDict

JSON = dict[str, Any]
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _none_to_str(value: Any) -> Any:
    return "" if value is None else value


def _go_time(value: Any) -> Any:
    if value in (None, "", GO_ZERO_TIME) or (
        isinstance(value, str) and value.startswith("0001-01-01")
    ):
        return None
    return value


def _emit_go_time(value: datetime | None) -> str:
    if value is None:
        return GO_ZERO_TIME
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


ObjList = Annotated[list[JSON], BeforeValidator(_none_to_list)]
StrList = Annotated[list[str], BeforeValidator(_none_to_list)]
GoStr = Annotated[str, BeforeValidator(_none_to_str)]
GoTime = Annotated[
    datetime | None, BeforeValidator(_go_time), PlainSerializer(_emit_go_time, return_type=str)
]


class WireModel(BaseModel):
    """Base of all wire models: unknown fields are ignored, names are upstream's."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    omit_empty: ClassVar[frozenset[str]] = frozenset()
    """Fields upstream tags ``omitempty``: left out of the output when empty."""
    omit_none: ClassVar[frozenset[str]] = frozenset()
    """Fields that are Go pointers tagged ``omitempty``: left out only when ``None`` (an empty
    list is sent, and means something else than no list)."""


def _require_pod_identity(pod: JSON) -> JSON:
    """Check that a pod carries what every hop needs: metadata name, namespace and uid."""
    meta = pod.get("metadata")
    if not isinstance(meta, dict):
        raise ValueError("pod.metadata is missing: send the pod's full Kubernetes JSON")
    for key in ("name", "namespace", "uid"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise ValueError(f"pod.metadata.{key} is missing or empty: send the pod as stored")
    return pod


Pod = Annotated[JSON, AfterValidator(_require_pod_identity)]
"""A Kubernetes v1.Pod as JSON that carries metadata name, namespace and uid."""


class PodCreateRequests(WireModel):
    """VK → API server ``POST /create`` body (upstream ``PodCreateRequests``)."""

    pod: Pod
    configmaps: ObjList = Field(default_factory=list)
    secrets: ObjList = Field(default_factory=list)
    projectedvolumesmaps: ObjList = Field(default_factory=list)
    jobscriptURL: GoStr = ""


class RetrievedContainer(WireModel):
    """Per-container volume data the API server hands to a plugin."""

    name: str
    configMaps: ObjList = Field(default_factory=list)
    projectedvolumemaps: ObjList = Field(default_factory=list)
    secrets: ObjList = Field(default_factory=list)
    emptyDirs: StrList = Field(default_factory=list)


class RetrievedPodData(WireModel):
    """API server → plugin ``POST /create`` body: one per pod."""

    pod: Pod
    container: Annotated[list[RetrievedContainer], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    jobConfig: JSON | None = None
    jobScript: str | None = None
    omit_empty: ClassVar[frozenset[str]] = frozenset({"jobConfig", "jobScript"})


class CreateStruct(WireModel):
    """A plugin's answer to create: the pod UID and the remote job id."""

    PodUID: str
    PodJID: GoStr = ""


class PodStatus(WireModel):
    """Status of one pod on the remote side (upstream ``PodStatus``)."""

    name: GoStr = Field(default="", validation_alias=AliasChoices("name", "PodName"))
    UID: GoStr = Field(default="", validation_alias=AliasChoices("UID", "PodUID"))
    namespace: GoStr = Field(default="", validation_alias=AliasChoices("namespace", "PodNamespace"))
    JID: GoStr = Field(default="", validation_alias=AliasChoices("JID", "JobID"))
    containers: ObjList = Field(default_factory=list)
    initContainers: ObjList = Field(default_factory=list)
    podIP: str | None = None
    """Our addition: the pod's IP where the backend knows it (left out when unknown)."""
    events: list[JSON] | None = None
    """Our addition: the latest Events the backend recorded as a kubelet would (``Unhealthy``,
    ``Killing``, ``BackOff``, hook failures), each ``{"seq", "at", "type", "reason", "message",
    "container"}`` with ``seq`` increasing per pod; left out when there are none."""
    omit_empty: ClassVar[frozenset[str]] = frozenset({"podIP", "events"})


class ContainerLogOpts(WireModel):
    """Log options, as kubelet's ``ContainerLogOpts``. ``LimitBytes`` is accepted for ``Bytes``."""

    Tail: int = Field(default=0, ge=0)
    Bytes: int = Field(default=0, ge=0, validation_alias=AliasChoices("Bytes", "LimitBytes"))
    Timestamps: bool = False
    Follow: bool = False
    Previous: bool = False
    SinceSeconds: int = Field(default=0, ge=0)
    SinceTime: GoTime = None

    @model_validator(mode="after")
    def _exclusive(self) -> ContainerLogOpts:
        if self.Tail and self.Bytes:
            raise ValueError(
                "Opts.Tail and Opts.Bytes are both set: ask for the last lines or for a byte "
                "limit, not both"
            )
        if self.SinceSeconds and self.SinceTime is not None:
            raise ValueError("Opts.SinceSeconds and Opts.SinceTime are both set: give only one")
        return self

    def since(self, now: datetime | None = None) -> datetime | None:
        """The earliest log time wanted, from SinceSeconds or SinceTime."""
        if self.SinceTime is not None:
            t = self.SinceTime
            return t if t.tzinfo else t.replace(tzinfo=UTC)
        if self.SinceSeconds:
            now = now or datetime.now(UTC)
            return datetime.fromtimestamp(now.timestamp() - self.SinceSeconds, UTC)
        return None


class LogStruct(WireModel):
    """A log request for one container of one pod (upstream ``LogStruct``)."""

    Namespace: str = Field(min_length=1)
    PodUID: str = Field(min_length=1)
    PodName: str = Field(min_length=1)
    ContainerName: str = Field(min_length=1)
    Opts: ContainerLogOpts = Field(default_factory=ContainerLogOpts)


_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]i?|Ki)?$")


def _quantity(value: Any) -> Any:
    """A Kubernetes quantity as upstream's string; a plain integer (what plugins of ours
    sent before) is accepted and turned into one."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        return str(value)
    if isinstance(value, str) and _QUANTITY.match(value.strip()):
        return value.strip()
    raise ValueError(f'{value!r} is not a Kubernetes quantity: write e.g. "4" or "500m"')


Quantity = Annotated[str, BeforeValidator(_quantity)]


class Accelerator(WireModel):
    """One kind of accelerator a plugin offers, e.g. ``nvidia.com/gpu`` (upstream
    ``AcceleratorResponse``: ``available`` is a quantity string, an integer is accepted)."""

    resourceType: str
    available: Quantity = "0"


class NodeResources(WireModel):
    """Capacity a plugin announces in its ping answer (upstream ``ResourcesResponse``:
    Kubernetes quantities as strings; a field left out leaves the node's figure as it is)."""

    cpu: GoStr = ""
    memory: GoStr = ""
    pods: GoStr = ""
    accelerators: Annotated[list[Accelerator], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    omit_empty: ClassVar[frozenset[str]] = frozenset({"cpu", "memory", "pods", "accelerators"})


class PingAnswer(WireModel):
    """A plugin's answer to a ping (``GET /status`` with ``[]``; upstream ``PingResponse``).

    ``taints`` is ``None`` when the plugin sent none: the node's taints stay as they are. A
    list, even empty, replaces the taints the edge set before (upstream's rule)."""

    status: GoStr = "ok"
    resources: NodeResources | None = None
    taints: list[JSON] | None = None
    omit_empty: ClassVar[frozenset[str]] = frozenset({"status", "resources"})
    omit_none: ClassVar[frozenset[str]] = frozenset({"taints"})

    @classmethod
    def from_body(cls, body: bytes | str) -> PingAnswer:
        """Read a ping answer: a JSON object, a JSON list (an old plugin's status answer to
        ``[]``) or plain text (older plugins answer e.g. ``"ok"``)."""
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            data = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return cls(status=text.strip() or "ok")
        if isinstance(data, dict):
            return cls.model_validate(data)
        if isinstance(data, str):
            return cls(status=data or "ok")
        return cls()


POD_STATUS_LIST: TypeAdapter[list[PodStatus]] = TypeAdapter(list[PodStatus])
POD_LIST: TypeAdapter[list[JSON]] = TypeAdapter(list[Pod])
POD: TypeAdapter[JSON] = TypeAdapter(Pod)


# --- reading big /status bodies ------------------------------------------------------------------
# A status call carries every non-terminal pod of a node (thousands). Hops that only need the
# pods' UIDs (or the statuses' UIDs and containers) read the JSON bytes with msgspec into structs
# naming just those fields: everything else is skipped without being built, about three times
# faster than pydantic-core doing the same with TypedDicts (bench/RESULTS.md). Bytes msgspec
# refuses go through pydantic, so the errors name the field exactly as everywhere else.

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _Identity(msgspec.Struct):
    name: NonEmpty
    namespace: NonEmpty
    uid: NonEmpty


class _PodIdentity(msgspec.Struct):
    metadata: _Identity


class _StatusUID(msgspec.Struct):
    UID: str | None = None
    PodUID: str | None = None

    @property
    def uid(self) -> str:
        return self.UID or self.PodUID or ""


class _StatusContainers(_StatusUID):
    containers: list[JSON] | None = None


_POD_IDENTITIES = msgspec.json.Decoder(list[_PodIdentity])
_STATUS_UIDS = msgspec.json.Decoder(list[_StatusUID])
_STATUS_CONTAINERS = msgspec.json.Decoder(list[_StatusContainers])


def pod_uids(raw: bytes) -> list[str]:
    """The UIDs of a JSON list of pods (a ``/status`` body), read without building the pods.

    Raises :class:`pydantic.ValidationError` naming the field, with the messages of
    :data:`POD_LIST` (type ``json_invalid`` when the body is not JSON)."""
    try:
        return [p.metadata.uid for p in _POD_IDENTITIES.decode(raw)]
    except msgspec.MsgspecError:
        return [pod_meta(p)[2] for p in POD_LIST.validate_json(raw)]


def status_uids(raw: bytes) -> list[str]:
    """The pod UIDs of a JSON list of pod statuses (a ``/status`` answer), in order, read
    without building the statuses (``""`` for a status without one).

    ``null`` (what a Go plugin sends for no statuses) is an empty list.
    Raises :class:`pydantic.ValidationError` when ``raw`` is not a list of objects."""
    if raw.strip() == b"null":
        return []
    try:
        return [s.uid for s in _STATUS_UIDS.decode(raw)]
    except msgspec.MsgspecError:
        return [digest_uid(s) for s in STATUS_UIDS.validate_json(raw)]


def status_containers(raw: bytes) -> dict[str, list[JSON]]:
    """Each pod UID of a JSON list of pod statuses with its container statuses (what
    :func:`pod_state` reads), without building the rest.

    Raises :class:`msgspec.MsgspecError` when ``raw`` is not a list of pod statuses."""
    return {s.uid: s.containers or [] for s in _STATUS_CONTAINERS.decode(raw)}


class StatusUID(TypedDict, total=False):
    """The UID of a pod status (upstream alias ``PodUID``)."""

    UID: str | None
    PodUID: str | None


STATUS_UIDS: TypeAdapter[list[StatusUID]] = TypeAdapter(list[StatusUID])
"""What :func:`status_uids` reads, as pydantic sees it (for its error messages)."""


def digest_uid(status: Mapping[str, Any]) -> str:
    """The pod UID of a pod status (whole or digest)."""
    return status.get("UID") or status.get("PodUID") or ""


def pod_state(containers: Sequence[Mapping[str, Any]]) -> str:
    """``pending`` / ``running`` / ``succeeded`` / ``failed`` from Kubernetes container
    statuses (only their ``state`` is read)."""
    states = [c.get("state") or {} for c in containers]
    if any((s.get("terminated") or {}).get("exitCode") for s in states):
        return "failed"
    if states and all(s.get("terminated") is not None for s in states):
        return "succeeded"
    if any(s.get("running") is not None for s in states):
        return "running"
    return "pending"


def dump(model: WireModel) -> JSON:
    """The upstream JSON form of a model: upstream field names, ``omitempty`` fields left out
    when empty (in nested models too)."""
    return _omit(model, model.model_dump(mode="json", by_alias=False))


def _omit(model: WireModel, data: JSON) -> JSON:
    for name in type(model).model_fields:
        value, out = getattr(model, name), data.get(name)
        if isinstance(value, WireModel) and isinstance(out, dict):
            _omit(value, out)
        elif isinstance(value, list) and isinstance(out, list):
            for item, item_out in zip(value, out, strict=True):
                if isinstance(item, WireModel) and isinstance(item_out, dict):
                    _omit(item, item_out)
    for name in model.omit_empty:
        if data.get(name) in (None, "", {}, []):
            data.pop(name, None)
    for name in model.omit_none:
        if data.get(name, 0) is None:
            data.pop(name)
    return data


def status_list_json(statuses: list[PodStatus]) -> bytes:
    """A ``/status`` answer as JSON bytes, serialized in one pass (fast for thousands of pods);
    the same form as :func:`dump` gives for each status."""
    return POD_STATUS_LIST.dump_json(statuses, exclude_none=True)


def pod_meta(pod: JSON) -> tuple[str, str, str]:
    """``(namespace, name, uid)`` of a pod dict."""
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))


def validation_message(exc: ValidationError) -> str:
    """One readable line per problem, each naming the field by its dotted path."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__") or "body"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)
