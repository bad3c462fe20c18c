"""Environment resolution, volume files and path confinement (interlink_core.podspec)."""

from __future__ import annotations

import base64
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlink_core.errors import BadRequest
from interlink_core.models import RetrievedPodData
from interlink_core.podspec import (
    confined,
    container_mounts,
    expand,
    materialize_volumes,
    node_cpus,
    parse_quantity,
    resolve_env,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CM = {"metadata": {"name": "cm"}, "data": {"key": "value", "other": "x"}}
SECRET = {"metadata": {"name": "sec"}, "data": {"password": b64("hunter2"), "user": b64("bob")}}


def pod_data(
    container: dict[str, Any], volumes: list[Any] | None = None, **extra: Any
) -> RetrievedPodData:
    pod = {
        "metadata": {
            "name": "web",
            "namespace": "team",
            "uid": "uid-1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {
            "nodeName": "vnode",
            "serviceAccountName": "sa",
            "containers": [container],
            "volumes": volumes or [],
        },
    }
    return RetrievedPodData.model_validate(
        {
            "pod": pod,
            "container": [
                {"name": container["name"], "configMaps": [CM], "secrets": [SECRET], **extra}
            ],
        }
    )


def env_of(container: dict[str, Any]) -> dict[str, str]:
    data = pod_data(container)
    return resolve_env(data.pod, data.pod["spec"]["containers"][0], data, "127.1.0.9")


# --- environment ------------------------------------------------------------------------------


def test_plain_values_and_expansion() -> None:
    env = env_of(
        {
            "name": "c",
            "env": [
                {"name": "A", "value": "one"},
                {"name": "B", "value": "$(A)-two-$(MISSING)-$$(A)"},
                {"name": "EMPTY"},
            ],
        }
    )
    assert env == {"A": "one", "B": "one-two-$(MISSING)-$(A)", "EMPTY": ""}
    assert expand("$(A)$(B)", {"A": "x"}) == "x$(B)"


def test_config_map_and_secret_refs() -> None:
    env = env_of(
        {
            "name": "c",
            "env": [
                {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "key"}}},
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                {
                    "name": "OPT",
                    "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
                },
                {
                    "name": "OPTKEY",
                    "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "no", "optional": True}},
                },
            ],
        }
    )
    assert env == {"K": "value", "P": "hunter2"}


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ({"configMapKeyRef": {"name": "gone", "key": "k"}}, "spec.containers[0].env[0].valueFrom"),
        ({"secretKeyRef": {"name": "sec", "key": "nokey"}}, "has no key 'nokey'"),
        ({"fieldRef": {"fieldPath": "spec.bogus"}}, "fieldRef.fieldPath"),
    ],
)
def test_missing_refs_are_bad_requests(ref: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest) as err:
        env_of({"name": "c", "env": [{"name": "X", "valueFrom": ref}]})
    assert needle in err.value.message


def test_field_refs() -> None:
    paths = {
        "N": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "APP": "metadata.labels['app']",
        "NOTE": "metadata.annotations['note']",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "IP": "status.podIP",
        "HOST": "status.hostIP",
    }
    env = env_of(
        {
            "name": "c",
            "env": [
                {"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()
            ],
        }
    )
    assert env == {
        "N": "web",
        "NS": "team",
        "UID": "uid-1",
        "APP": "web",
        "NOTE": 'say "hi"',
        "NODE": "vnode",
        "SA": "sa",
        "IP": "127.1.0.9",
        "HOST": "127.1.0.9",
    }


def test_resource_field_refs() -> None:
    env = env_of(
        {
            "name": "c",
            "resources": {"limits": {"cpu": "1500m", "memory": "2Gi"}},
            "env": [
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {
                    "name": "MEM",
                    "valueFrom": {
                        "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                    },
                },
                {
                    "name": "MCPU",
                    "valueFrom": {
                        "resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}
                    },
                },
            ],
        }
    )
    assert env == {"CPU": "2", "MEM": "2048", "MCPU": "1500"}
    unset = env_of(
        {
            "name": "c",
            "env": [{"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
        }
    )
    assert unset == {"C": str(node_cpus())}


def test_quantities() -> None:
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity("1Ki") == 1024
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("2G") == 2 * 10**9
    assert parse_quantity(4) == 4
    with pytest.raises(BadRequest):
        parse_quantity("lots")


def test_env_from_with_prefix_optional_and_override() -> None:
    env = env_of(
        {
            "name": "c",
            "envFrom": [
                {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                {"secretRef": {"name": "sec"}},
                {"secretRef": {"name": "absent", "optional": True}},
            ],
            "env": [{"name": "user", "value": "override"}],
        }
    )
    assert env == {"CM_key": "value", "CM_other": "x", "password": "hunter2", "user": "override"}
    with pytest.raises(BadRequest, match=r"spec.containers\[0\].envFrom\[0\].configMapRef"):
        env_of({"name": "c", "envFrom": [{"configMapRef": {"name": "absent"}}]})


# --- volumes ----------------------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_map_and_secret_volumes(tmp_path: Path) -> None:
    volumes = [
        {"name": "all", "configMap": {"name": "cm"}},
        {
            "name": "some",
            "configMap": {
                "name": "cm",
                "defaultMode": 0o600,
                "items": [
                    {"key": "key", "path": "sub/dir/k.txt"},
                    {"key": "other", "path": "o", "mode": 0o400},
                ],
            },
        },
        {"name": "sec", "secret": {"secretName": "sec"}},
        {"name": "opt", "configMap": {"name": "absent", "optional": True}},
        {"name": "scratch", "emptyDir": {}},
    ]
    data = pod_data({"name": "c"}, volumes)
    dirs = materialize_volumes(data, tmp_path)
    assert set(dirs) == {"all", "some", "sec", "opt", "scratch"}
    assert (dirs["all"] / "key").read_text() == "value"
    assert mode_of(dirs["all"] / "key") == 0o644
    assert (dirs["some"] / "sub/dir/k.txt").read_text() == "value"
    assert mode_of(dirs["some"] / "sub/dir/k.txt") == 0o600
    assert mode_of(dirs["some"] / "o") == 0o400
    assert not (dirs["some"] / "key").exists()
    assert (dirs["sec"] / "password").read_text() == "hunter2"
    assert mode_of(dirs["sec"] / "password") == 0o644
    assert list(dirs["opt"].iterdir()) == []
    assert dirs["scratch"].is_dir()


def test_projected_and_downward_api(tmp_path: Path) -> None:
    volumes = [
        {"name": "sent", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
        {
            "name": "built",
            "projected": {
                "sources": [
                    {"configMap": {"name": "cm", "items": [{"key": "key", "path": "cfg/key"}]}},
                    {"secret": {"name": "sec", "items": [{"key": "user", "path": "user"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}
                            ]
                        }
                    },
                ]
            },
        },
        {
            "name": "info",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o444},
                ]
            },
        },
    ]
    projected = {"metadata": {"name": "sent"}, "data": {"token": "jwt", "ca.crt": "PEM"}}
    data = pod_data({"name": "c"}, volumes, projectedvolumemaps=[projected])
    dirs = materialize_volumes(data, tmp_path, pod_ip="127.1.0.2")
    assert (dirs["sent"] / "token").read_text() == "jwt"
    assert (dirs["sent"] / "ca.crt").read_text() == "PEM"
    assert (dirs["built"] / "cfg/key").read_text() == "value"
    assert (dirs["built"] / "user").read_text() == "bob"
    assert (dirs["built"] / "ns").read_text() == "team"
    assert (dirs["info"] / "labels").read_text() == 'app="web"\ntier="front"\n'
    assert (dirs["info"] / "name").read_text() == "web"
    assert mode_of(dirs["info"] / "name") == 0o444


@pytest.mark.parametrize(
    ("volume", "needle"),
    [
        ({"name": "v", "configMap": {"name": "absent"}}, "spec.volumes[0].configMap"),
        ({"name": "v", "persistentVolumeClaim": {"claimName": "x"}}, "not supported"),
        ({"name": "../v", "emptyDir": {}}, "spec.volumes[0].name"),
        (
            {"name": "v", "configMap": {"name": "cm", "items": [{"key": "key", "path": "/etc/x"}]}},
            "spec.volumes[0].configMap.items[0].path",
        ),
        (
            {
                "name": "v",
                "configMap": {"name": "cm", "items": [{"key": "key", "path": "a/../../x"}]},
            },
            "'..'",
        ),
        ({"name": "v", "configMap": {"name": "cm", "defaultMode": 4096}}, "defaultMode"),
    ],
)
def test_bad_volumes(tmp_path: Path, volume: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest) as err:
        materialize_volumes(pod_data({"name": "c"}, [volume]), tmp_path / "root")
    assert needle in err.value.message


def test_hostile_configmap_keys_are_refused(tmp_path: Path) -> None:
    evil = {"metadata": {"name": "cm"}, "data": {"../../escape": "x"}}
    data = RetrievedPodData.model_validate(
        {
            "pod": {
                "metadata": {"name": "p", "namespace": "n", "uid": "u"},
                "spec": {
                    "containers": [{"name": "c"}],
                    "volumes": [{"name": "v", "configMap": {"name": "cm"}}],
                },
            },
            "container": [{"name": "c", "configMaps": [evil]}],
        }
    )
    with pytest.raises(BadRequest, match=r"'\.\.'"):
        materialize_volumes(data, tmp_path / "root")
    assert not (tmp_path / "escape").exists()


def test_confined() -> None:
    root = Path("/srv/pod")
    assert confined(root, "a/b", "f") == root / "a" / "b"
    assert confined(root, "./a", "f") == root / "a"
    for bad in ["", "/abs", "..", "a/../..", "a/../../b", "x\x00y"]:
        with pytest.raises(BadRequest, match=r"^f: "):
            confined(root, bad, "f")


PATH_CHARS = st.sampled_from(["a", "b", ".", "..", "/", "\x00", "~", "\\", "-", " "])
hostile = st.lists(PATH_CHARS, min_size=0, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(paths=st.lists(hostile, min_size=1, max_size=4), sub=hostile)
def test_hostile_paths_never_write_outside_root(paths: list[str], sub: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        items = [{"key": "key", "path": p} for p in paths]
        volumes = [{"name": "v", "configMap": {"name": "cm", "items": items}}]
        container = {
            "name": "c",
            "volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": sub}],
        }
        data = pod_data(container, volumes)
        try:
            dirs = materialize_volumes(data, root)
            container_mounts(container, dirs, "spec.containers[0]")
        except BadRequest as exc:
            assert exc.message.startswith("spec.")
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                full = os.path.realpath(os.path.join(dirpath, name))
                assert full == str(root) or full.startswith(str(root) + os.sep), full


def test_container_mounts(tmp_path: Path) -> None:
    vols = {"data": tmp_path / "data"}
    vols["data"].mkdir()
    mounts = container_mounts(
        {
            "volumeMounts": [
                {"name": "data", "mountPath": "/data/"},
                {"name": "data", "mountPath": "/logs", "subPath": "logs", "readOnly": True},
                {"name": "data", "mountPath": "/x", "subPathExpr": "$(POD)"},
            ]
        },
        vols,
        "spec.containers[0]",
        {"POD": "web"},
    )
    assert [(m.mount_path, m.source, m.read_only) for m in mounts] == [
        ("/data", vols["data"], False),
        ("/logs", vols["data"] / "logs", True),
        ("/x", vols["data"] / "web", False),
    ]
    assert (vols["data"] / "logs").is_dir()
    for vm, needle in [
        ({"name": "data", "mountPath": "rel"}, "volumeMounts[0].mountPath"),
        ({"name": "nope", "mountPath": "/a"}, "volumeMounts[0].name"),
        ({"name": "data", "mountPath": "/a", "subPath": "../x"}, "volumeMounts[0].subPath"),
    ]:
        with pytest.raises(BadRequest, match=needle.replace("[", r"\[").replace("]", r"\]")):
            container_mounts({"volumeMounts": [vm]}, vols, "spec.containers[0]")
