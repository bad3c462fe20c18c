"""Pod spec helpers shared by backends: environment resolution, volume files, volume mounts.

* :func:`resolve_env` computes a container's environment the way the kubelet does (``envFrom``
  first, then ``env`` in order, ``$(VAR)`` references to earlier variables expanded, values from
  ConfigMaps, Secrets, the pod's own fields and the container's resources).
* :func:`materialize_volumes` writes ConfigMap, Secret, projected, downward API and emptyDir
  volumes as plain files under one directory, one sub-directory per volume.
* :func:`container_mounts` turns a container's ``volumeMounts`` into (mount path, directory on
  disk) pairs, honouring ``subPath``.

Every path that comes from user data (keys, ``items[].path``, ``subPath``, volume names) goes
through :func:`confined`, which refuses absolute paths and ``..`` escapes with a
:class:`~interlink_core.errors.BadRequest` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BadRequest
from .models import JSON, RetrievedPodData

DEFAULT_FILE_MODE = 0o644
UID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")
"""Pod UIDs name directories: letters, digits and '-' only."""
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
"""Container names (DNS labels), as Kubernetes validates them."""
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")
_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


# --- paths ------------------------------------------------------------------------------------


def confined(root: Path, relative: str, field: str) -> Path:
    """``root / relative``, refusing anything that could land outside ``root``.

    ``relative`` must be a non-empty relative POSIX path without ``..`` components or NUL bytes;
    otherwise a :class:`BadRequest` names ``field``.
    """
    if not isinstance(relative, str) or not relative:
        raise BadRequest(f"{field}: must be a non-empty relative path")
    if "\x00" in relative:
        raise BadRequest(f"{field}: {relative!r} contains a NUL byte")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise BadRequest(f"{field}: {relative!r} is absolute; give a path relative to the volume")
    if any(part == ".." for part in pure.parts):
        raise BadRequest(f"{field}: {relative!r} contains '..'; paths may not leave the volume")
    target = root.joinpath(*pure.parts)
    base = os.path.realpath(root)
    real = os.path.realpath(target)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise BadRequest(f"{field}: {relative!r} resolves outside the volume")
    return target


def _write_file(root: Path, relative: str, content: bytes, mode: int, field: str) -> None:
    target = confined(root, relative, field)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # the parent may contain symlinks only if something else made them; re-check
        confined(root, relative, field)
        if target.is_dir():
            raise BadRequest(f"{field}: {relative!r} is already a directory in this volume")
        tmp = target.with_name(target.name + ".tmp-interlink")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, content)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except (NotADirectoryError, FileExistsError):
        raise BadRequest(
            f"{field}: {relative!r} clashes with another file of the same volume"
        ) from None


def _mode(value: Any, default: int, field: str) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        raise BadRequest(f"{field}: must be a file mode between 0 and 0777 (decimal 0-511)")
    return value


# --- lookups ----------------------------------------------------------------------------------


class _Objects:
    """ConfigMaps, Secrets and projected-volume maps of one pod, by name."""

    def __init__(self, data: RetrievedPodData) -> None:
        self.configmaps: dict[str, JSON] = {}
        self.secrets: dict[str, JSON] = {}
        self.projected: dict[str, JSON] = {}
        for c in data.container:
            for target, objs in (
                (self.configmaps, c.configMaps),
                (self.secrets, c.secrets),
                (self.projected, c.projectedvolumemaps),
            ):
                for obj in objs:
                    name = (obj.get("metadata") or {}).get("name")
                    if isinstance(name, str):
                        target.setdefault(name, obj)


def _configmap_data(cm: JSON) -> dict[str, bytes]:
    out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        out[k] = _b64(v, f"configmap {_name(cm)} binaryData.{k}")
    return out


def _secret_data(secret: JSON) -> dict[str, bytes]:
    out = {
        k: _b64(v, f"secret {_name(secret)} data.{k}")
        for k, v in (secret.get("data") or {}).items()
    }
    for k, v in (secret.get("stringData") or {}).items():
        out[k] = str(v).encode()
    return out


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what}: is not valid base64") from None


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


# --- quantities and pod fields ----------------------------------------------------------------


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (``"500m"``, ``"2Gi"``, ``"1e3"``, ``4``) as a number."""
    text = str(value).strip()
    for suffix, factor in _BINARY_SUFFIXES.items():
        if text.endswith(suffix):
            return _decimal(text[: -len(suffix)], value) * factor
    if text and not text[-1].isdigit() and text[-1] in _DECIMAL_SUFFIXES:
        return _decimal(text[:-1], value) * _DECIMAL_SUFFIXES[text[-1]]
    return _decimal(text, value)


def _decimal(text: str, original: Any) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise BadRequest(f"{original!r} is not a Kubernetes quantity (e.g. 500m, 2Gi)") from None


def node_cpus() -> int:
    """CPUs of this host."""
    return os.cpu_count() or 1


def node_memory_bytes() -> int:
    """Total memory of this host in bytes (from ``/proc/meminfo``; 0 if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _container(pod: JSON, name: str) -> tuple[JSON, str] | None:
    spec = pod.get("spec") or {}
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            if c.get("name") == name:
                return c, f"spec.{kind}[{i}]"
    return None


def field_value(pod: JSON, path: str, pod_ip: str, field: str, host_ip: str = "") -> str:
    """The value of a downward-API ``fieldRef.fieldPath`` of ``pod``."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    host_ip = host_ip or pod_ip
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "".join(f"{k}={json.dumps(str(v))}\n" for k, v in sorted(items.items()))
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise BadRequest(f"{field}: field path {path!r} is not supported")


def resource_value(pod: JSON, ref: JSON, default_container: str, field: str) -> str:
    """The value of a ``resourceFieldRef`` (limits/requests of cpu, memory, ...), rounded up in
    units of its divisor. Unset limits fall back to this host's capacity, unset requests to the
    limit or 0 (best effort, as the kubelet does)."""
    name = ref.get("containerName") or default_container
    found = _container(pod, str(name))
    if found is None:
        raise BadRequest(f"{field}.containerName: no container named {name!r} in this pod")
    resource = str(ref.get("resource") or "")
    kind, _, what = resource.partition(".")
    if kind not in ("limits", "requests") or not what:
        raise BadRequest(
            f"{field}.resource: {resource!r} is not e.g. limits.cpu or requests.memory"
        )
    resources = found[0].get("resources") or {}
    limits = resources.get("limits") or {}
    raw = (resources.get(kind) or {}).get(what)
    if raw is None and kind == "requests":
        raw = limits.get(what, 0)
    if raw is None:
        raw = {"cpu": node_cpus(), "memory": node_memory_bytes()}.get(what, 0)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise BadRequest(f"{field}.divisor: must be positive")
    return str(math.ceil(parse_quantity(raw) / divisor))


# --- environment ------------------------------------------------------------------------------


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables are replaced, unknown references are
    kept as written, ``$$`` is a literal ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def resolve_env(
    pod: JSON,
    container: JSON,
    data: RetrievedPodData,
    pod_ip: str,
    host_ip: str = "",
) -> dict[str, str]:
    """The environment a container's spec asks for (``envFrom``, then ``env``), without any
    variables of the host. Missing non-optional references raise :class:`BadRequest`."""
    objs = _Objects(data)
    cname = str(container.get("name", ""))
    found = _container(pod, cname)
    where = found[1] if found else "container"
    env: dict[str, str] = {}
    for i, src in enumerate(container.get("envFrom") or []):
        field = f"{where}.envFrom[{i}]"
        prefix = str(src.get("prefix") or "")
        for kind, table, decode in (
            ("configMapRef", objs.configmaps, _configmap_data),
            ("secretRef", objs.secrets, _secret_data),
        ):
            ref = src.get(kind)
            if not ref:
                continue
            obj = table.get(str(ref.get("name")))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise BadRequest(f"{field}.{kind}: {ref.get('name')!r} was not sent with the pod")
            for key, raw in decode(obj).items():
                if "=" not in key:
                    env[prefix + key] = raw.decode(errors="replace")
    for i, var in enumerate(container.get("env") or []):
        field = f"{where}.env[{i}]"
        name = var.get("name")
        if not isinstance(name, str) or not name or "=" in name:
            raise BadRequest(f"{field}.name: must be a non-empty name without '='")
        source = var.get("valueFrom")
        if not source:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        found_value = _value_from(pod, cname, source, objs, pod_ip, host_ip, f"{field}.valueFrom")
        if found_value is not None:
            env[name] = found_value
    return env


def _value_from(
    pod: JSON,
    cname: str,
    source: JSON,
    objs: _Objects,
    pod_ip: str,
    host_ip: str,
    field: str,
) -> str | None:
    for kind, table, decode in (
        ("configMapKeyRef", objs.configmaps, _configmap_data),
        ("secretKeyRef", objs.secrets, _secret_data),
    ):
        ref = source.get(kind)
        if not ref:
            continue
        obj = table.get(str(ref.get("name")))
        values = decode(obj) if obj is not None else None
        key = str(ref.get("key"))
        if values is None or key not in values:
            if ref.get("optional"):
                return None
            what = "was not sent with the pod" if values is None else f"has no key {key!r}"
            raise BadRequest(f"{field}.{kind}: {ref.get('name')!r} {what}")
        return values[key].decode(errors="replace")
    if source.get("fieldRef"):
        path = str(source["fieldRef"].get("fieldPath", ""))
        return field_value(pod, path, pod_ip, f"{field}.fieldRef.fieldPath", host_ip)
    if source.get("resourceFieldRef"):
        return resource_value(pod, source["resourceFieldRef"], cname, f"{field}.resourceFieldRef")
    raise BadRequest(f"{field}: unsupported source {sorted(source)}")


# --- volumes ----------------------------------------------------------------------------------


def materialize_volumes(
    data: RetrievedPodData, root: Path, pod_ip: str = "", host_ip: str = ""
) -> dict[str, Path]:
    """Write the pod's volumes as files under ``root/<volume name>``; return name → directory.

    Handles configMap, secret, projected (the upstream VK sends a projected volume as a ConfigMap
    named like the volume in ``projectedvolumemaps``; without one the sources are resolved here),
    downwardAPI and emptyDir volumes; ``hostPath`` maps to the host path itself. Any other volume
    type is refused with a :class:`BadRequest` naming it.
    """
    pod = data.pod
    objs = _Objects(data)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for i, vol in enumerate((pod.get("spec") or {}).get("volumes") or []):
        field = f"spec.volumes[{i}]"
        name = vol.get("name")
        if not isinstance(name, str) or "/" in name or name in (".", ".."):
            raise BadRequest(f"{field}.name: {name!r} is not a valid volume name")
        if name in out:
            raise BadRequest(f"{field}.name: volume {name!r} is defined twice")
        directory = confined(root, name, f"{field}.name")
        if "hostPath" in vol:
            out[name] = Path(str((vol["hostPath"] or {}).get("path", "")))
            continue
        directory.mkdir(parents=True, exist_ok=True)
        out[name] = directory
        if "emptyDir" in vol:
            continue
        if "configMap" in vol:
            src = vol["configMap"] or {}
            _write_object(
                directory,
                src,
                objs.configmaps,
                str(src.get("name")),
                _configmap_data,
                DEFAULT_FILE_MODE,
                f"{field}.configMap",
            )
        elif "secret" in vol:
            src = vol["secret"] or {}
            _write_object(
                directory,
                src,
                objs.secrets,
                str(src.get("secretName")),
                _secret_data,
                DEFAULT_FILE_MODE,
                f"{field}.secret",
            )
        elif "projected" in vol:
            _write_projected(
                directory,
                pod,
                name,
                vol["projected"] or {},
                objs,
                pod_ip,
                host_ip,
                f"{field}.projected",
            )
        elif "downwardAPI" in vol:
            src = vol["downwardAPI"] or {}
            mode = _mode(
                src.get("defaultMode"), DEFAULT_FILE_MODE, f"{field}.downwardAPI.defaultMode"
            )
            _write_downward(directory, pod, src, mode, pod_ip, host_ip, f"{field}.downwardAPI")
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise BadRequest(
                f"{field}: volume {name!r} of type {', '.join(kinds) or '(none)'} is not "
                "supported here; use configMap, secret, projected, downwardAPI, emptyDir or "
                "hostPath"
            )
    return out


def _write_object(
    directory: Path,
    src: JSON,
    table: dict[str, JSON],
    obj_name: str,
    decode: Any,
    default_mode: int,
    field: str,
) -> None:
    mode = _mode(src.get("defaultMode"), default_mode, f"{field}.defaultMode")
    obj = table.get(obj_name)
    if obj is None:
        if src.get("optional"):
            return
        raise BadRequest(f"{field}: {obj_name!r} was not sent with the pod")
    values: dict[str, bytes] = decode(obj)
    items = src.get("items")
    if not items:
        for key, content in values.items():
            _write_file(directory, key, content, mode, f"{field} key {key!r}")
        return
    for j, item in enumerate(items):
        key = str(item.get("key"))
        if key not in values:
            if src.get("optional"):
                continue
            raise BadRequest(f"{field}.items[{j}].key: {obj_name!r} has no key {key!r}")
        item_mode = _mode(item.get("mode"), mode, f"{field}.items[{j}].mode")
        _write_file(
            directory,
            str(item.get("path") or ""),
            values[key],
            item_mode,
            f"{field}.items[{j}].path",
        )


def _write_downward(
    directory: Path, pod: JSON, src: JSON, mode: int, pod_ip: str, host_ip: str, field: str
) -> None:
    first = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
    for j, item in enumerate(src.get("items") or []):
        f = f"{field}.items[{j}]"
        if item.get("fieldRef"):
            path = str(item["fieldRef"].get("fieldPath", ""))
            value = field_value(pod, path, pod_ip, f"{f}.fieldRef.fieldPath", host_ip)
        elif item.get("resourceFieldRef"):
            value = resource_value(
                pod, item["resourceFieldRef"], str(first), f"{f}.resourceFieldRef"
            )
        else:
            raise BadRequest(f"{f}: needs fieldRef or resourceFieldRef")
        item_mode = _mode(item.get("mode"), mode, f"{f}.mode")
        _write_file(directory, str(item.get("path") or ""), value.encode(), item_mode, f"{f}.path")


def _write_projected(
    directory: Path,
    pod: JSON,
    name: str,
    src: JSON,
    objs: _Objects,
    pod_ip: str,
    host_ip: str,
    field: str,
) -> None:
    mode = _mode(src.get("defaultMode"), DEFAULT_FILE_MODE, f"{field}.defaultMode")
    sent = objs.projected.get(name)
    if sent is not None:
        for key, content in _configmap_data(sent).items():
            _write_file(directory, key, content, mode, f"{field} file {key!r}")
        return
    for j, source in enumerate(src.get("sources") or []):
        f = f"{field}.sources[{j}]"
        if source.get("configMap"):
            cm = source["configMap"]
            _write_object(
                directory,
                cm,
                objs.configmaps,
                str(cm.get("name")),
                _configmap_data,
                mode,
                f"{f}.configMap",
            )
        elif source.get("secret"):
            sec = source["secret"]
            _write_object(
                directory,
                sec,
                objs.secrets,
                str(sec.get("name")),
                _secret_data,
                mode,
                f"{f}.secret",
            )
        elif source.get("downwardAPI"):
            _write_downward(
                directory, pod, source["downwardAPI"], mode, pod_ip, host_ip, f"{f}.downwardAPI"
            )
        # serviceAccountToken / clusterTrustBundle: no token exists on this side; the VK sends
        # them through projectedvolumemaps when it has them.


# --- mounts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """One volume mount of a container: where the container expects it, what is on disk."""

    mount_path: str
    source: Path
    read_only: bool = False


def container_mounts(
    container: JSON, volumes: dict[str, Path], where: str, env: dict[str, str] | None = None
) -> list[Mount]:
    """The container's ``volumeMounts`` as :class:`Mount` s (``subPath`` and ``subPathExpr``
    resolved and confined to the volume; sub-directories created when missing)."""
    out: list[Mount] = []
    for j, vm in enumerate(container.get("volumeMounts") or []):
        field = f"{where}.volumeMounts[{j}]"
        mount_path = vm.get("mountPath")
        if not isinstance(mount_path, str) or not mount_path.startswith("/"):
            raise BadRequest(f"{field}.mountPath: {mount_path!r} must be an absolute path")
        name = vm.get("name")
        if name not in volumes:
            raise BadRequest(f"{field}.name: no volume named {name!r} in spec.volumes")
        source = volumes[str(name)]
        sub = vm.get("subPath") or ""
        sub_field = f"{field}.subPath"
        if vm.get("subPathExpr"):
            sub = expand(str(vm["subPathExpr"]), env or {})
            sub_field = f"{field}.subPathExpr"
        if sub:
            source = confined(source, str(sub), sub_field)
            if not source.exists():
                try:
                    source.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise BadRequest(
                        f"{sub_field}: cannot create {sub!r}: {exc.strerror}"
                    ) from None
        normalized = "/" + "/".join(p for p in mount_path.split("/") if p)
        out.append(
            Mount(normalized if normalized != "/" else "/", source, bool(vm.get("readOnly")))
        )
    return out


def path_rewriter(mounts: list[Mount]) -> Callable[[str], str]:
    """A function replacing each mount path (as a whole path prefix) in a string by the
    directory on disk, for runtimes without a private mount namespace."""
    table = {m.mount_path: str(m.source) for m in mounts}
    if not table:
        return lambda text: text
    alternatives = "|".join(re.escape(p) for p in sorted(table, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w.\-/])(" + alternatives + r")(?=/|$|[^\w.\-])")
    return lambda text: pattern.sub(lambda m: table[m.group(1)], text)


def checked_uid(pod: JSON) -> str:
    """The pod's UID, refused with a 400 unless it is safe as a directory name."""
    uid = str((pod.get("metadata") or {}).get("uid", ""))
    if not UID_PATTERN.match(uid):
        raise BadRequest(
            "pod.metadata.uid: must be 1-64 letters, digits or '-' (it names a directory)"
        )
    return uid


def pod_containers(pod: JSON) -> list[tuple[str, str, JSON]]:
    """``(kind, field, container)`` for every init container then container, with names
    checked (valid DNS labels, unique); ``kind`` is ``init`` or ``main``."""
    spec = pod.get("spec") or {}
    if not spec.get("containers"):
        raise BadRequest("spec.containers: a pod needs at least one container")
    seen: set[str] = set()
    out: list[tuple[str, str, JSON]] = []
    for kind, key in (("init", "initContainers"), ("main", "containers")):
        for i, c in enumerate(spec.get(key) or []):
            where = f"spec.{key}[{i}]"
            name = c.get("name") if isinstance(c, dict) else None
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise BadRequest(
                    f"{where}.name: {name!r} is not a valid container name (lower-case "
                    "letters, digits and '-', at most 63)"
                )
            if name in seen:
                raise BadRequest(f"{where}.name: {name!r} is used by another container")
            seen.add(name)
            out.append((kind, where, c))
    return out


def command_line(container: JSON, where: str) -> tuple[list[str], list[str]]:
    """The container's ``command`` and ``args``, checked to be lists of strings."""
    command, args = container.get("command") or [], container.get("args") or []
    for field, value in (("command", command), ("args", args)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"{where}.{field}: must be a list of strings")
    return list(command), list(args)


@dataclass
class ObjectRefs:
    """The ConfigMaps and Secrets some containers and volumes refer to: name → required
    (``False`` when every reference to it is ``optional``)."""

    configmaps: dict[str, bool]
    secrets: dict[str, bool]

    def add(self, kind: str, ref: JSON, name_key: str = "name") -> None:
        table = self.configmaps if kind == "configmap" else self.secrets
        name = str(ref.get(name_key, ""))
        table[name] = table.get(name, False) or not ref.get("optional")


def object_refs(containers: list[JSON], volumes: list[JSON]) -> ObjectRefs:
    """What these containers (``env``, ``envFrom``) and volumes (``configMap``, ``secret``,
    ``projected`` sources) refer to."""
    refs = ObjectRefs({}, {})
    for c in containers:
        for e in c.get("env") or []:
            ref = e.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                refs.add("configmap", ref["configMapKeyRef"])
            if "secretKeyRef" in ref:
                refs.add("secret", ref["secretKeyRef"])
        for e in c.get("envFrom") or []:
            if "configMapRef" in e:
                refs.add("configmap", e["configMapRef"])
            if "secretRef" in e:
                refs.add("secret", e["secretRef"])
    for v in volumes:
        if "configMap" in v:
            refs.add("configmap", v["configMap"])
        if "secret" in v:
            refs.add("secret", v["secret"], "secretName")
        for src in (v.get("projected") or {}).get("sources") or []:
            if "configMap" in src:
                refs.add("configmap", src["configMap"])
            if "secret" in src:
                refs.add("secret", src["secret"])
    return refs
