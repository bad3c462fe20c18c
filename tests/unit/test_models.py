"""Wire models against golden files written in upstream interLink's field names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from interlink_core.apiserver import retrieved_pod_data
from interlink_core.models import (
    POD_STATUS_LIST,
    ContainerLogOpts,
    CreateStruct,
    LogStruct,
    PingAnswer,
    PodCreateRequests,
    RetrievedPodData,
    dump,
    pod_state,
    pod_uids,
    status_containers,
    status_uids,
    validation_message,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden(name: str) -> object:
    return json.loads((GOLDEN / name).read_text())


def test_vk_create_request_round_trips_in_upstream_form() -> None:
    raw = golden("vk_create_request.json")
    req = PodCreateRequests.model_validate(raw)
    out = dump(req)
    assert out["pod"] == raw["pod"]  # type: ignore[index]
    assert set(out) == {"pod", "configmaps", "secrets", "projectedvolumesmaps", "jobscriptURL"}
    # an older VK's fields that upstream dropped are accepted and not passed on; Go nulls
    # are empty lists
    older = PodCreateRequests.model_validate({**raw, "persistentvolumes": None, "secrets": None})
    assert "persistentvolumes" not in dump(older) and dump(older)["secrets"] == []


def test_api_server_splits_create_into_plugin_request_per_container() -> None:
    req = PodCreateRequests.model_validate(golden("vk_create_request.json"))
    expected = golden("plugin_create_request.json")
    expected["pod"] = req.pod  # type: ignore[index]
    data = dump(retrieved_pod_data(req))
    assert data == expected
    assert "jobConfig" not in data and "jobScript" not in data  # omitempty upstream
    RetrievedPodData.model_validate(data)


def test_create_response_and_status_response_round_trip() -> None:
    assert dump(CreateStruct.model_validate(golden("create_response.json"))) == golden(
        "create_response.json"
    )
    raw = golden("status_response.json")
    statuses = POD_STATUS_LIST.validate_python(raw)
    assert [dump(s) for s in statuses] == raw


def test_status_accepts_go_nulls_and_go_field_names() -> None:
    [s] = POD_STATUS_LIST.validate_python(
        [
            {
                "PodName": "p",
                "PodUID": "u",
                "PodNamespace": "n",
                "JobID": None,
                "containers": None,
                "initContainers": None,
            }
        ]
    )
    assert (s.name, s.UID, s.namespace, s.JID, s.containers) == ("p", "u", "n", "", [])


def test_log_request_golden_and_zero_time() -> None:
    raw = golden("log_request.json")
    req = LogStruct.model_validate(raw)
    assert req.Opts.SinceTime is None
    assert dump(req) == raw


def test_limit_bytes_alias_is_accepted_and_emitted_as_bytes() -> None:
    req = LogStruct.model_validate(golden("log_request_limitbytes.json"))
    assert req.Opts.Bytes == 512
    out = dump(req)["Opts"]
    assert out["Bytes"] == 512 and "LimitBytes" not in out


def test_since_time_is_emitted_in_rfc3339() -> None:
    opts = ContainerLogOpts(SinceTime=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert dump(opts)["SinceTime"] == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("opts", "field"),
    [
        ({"Tail": 5, "Bytes": 10}, "Opts.Tail and Opts.Bytes"),
        ({"Tail": -1}, "Opts.Tail"),
        ({"SinceSeconds": 5, "SinceTime": "2026-01-01T00:00:00Z"}, "SinceSeconds"),
        ({"Bytes": "many"}, "Opts.Bytes"),
    ],
)
def test_bad_log_options_name_the_field(opts: dict[str, object], field: str) -> None:
    body = {"Namespace": "n", "PodUID": "u", "PodName": "p", "ContainerName": "c", "Opts": opts}
    with pytest.raises(ValidationError) as err:
        LogStruct.model_validate(body)
    assert field in validation_message(err.value)


def test_pod_without_uid_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        PodCreateRequests.model_validate({"pod": {"metadata": {"name": "a", "namespace": "b"}}})
    assert "pod.metadata.uid" in validation_message(err.value)


def test_ping_answers_json_plain_text_and_empty() -> None:
    full = PingAnswer.from_body(json.dumps(golden("ping_response.json")))
    assert full.resources is not None and full.resources.accelerators[0].available == "4"
    assert dump(full) == golden("ping_response.json")
    assert PingAnswer.from_body((GOLDEN / "ping_plain.txt").read_bytes()).status == "ok"
    assert PingAnswer.from_body(b"").status == "ok"
    assert PingAnswer.from_body(b"[]").resources is None


def test_ping_quantities_are_strings_and_integers_are_accepted() -> None:
    # upstream's AcceleratorResponse.Available is a string: an integer makes its VK drop the
    # whole answer; plugins of ours sent integers before
    answer = PingAnswer.from_body(
        b'{"resources": {"accelerators": [{"resourceType": "nvidia.com/gpu", "available": 8}]}}'
    )
    assert dump(answer) == {
        "status": "ok",
        "resources": {"accelerators": [{"resourceType": "nvidia.com/gpu", "available": "8"}]},
    }
    with pytest.raises(ValidationError) as err:
        PingAnswer.model_validate(
            {"resources": {"accelerators": [{"resourceType": "x", "available": "lots"}]}}
        )
    assert "resources.accelerators.0.available" in validation_message(err.value)
    assert "not a Kubernetes quantity" in validation_message(err.value)


def test_ping_passes_on_only_what_the_plugin_said() -> None:
    # taints absent: leave the node's; taints present, even empty: replace them
    assert dump(PingAnswer.from_body(b'{"status": "ok"}')) == {"status": "ok"}
    assert dump(PingAnswer.from_body(b'{"status": "ok", "taints": []}')) == {
        "status": "ok",
        "taints": [],
    }
    assert PingAnswer.from_body(b'{"taints": null}').taints is None
    assert dump(PingAnswer.from_body(b'{"resources": {"cpu": "4"}}')) == {
        "status": "ok",
        "resources": {"cpu": "4"},
    }


def test_go_null_status_answer_is_an_empty_list() -> None:
    assert status_uids(b"null") == []


# --- reading big /status bodies by their UIDs and states -----------------------------------------


def test_pod_uids_reads_a_status_body_and_names_bad_fields() -> None:
    pod = golden("vk_create_request.json")["pod"]  # type: ignore[index]
    pods = [pod, {**pod, "metadata": {**pod["metadata"], "uid": "second"}}]
    assert pod_uids(json.dumps(pods).encode()) == [pod["metadata"]["uid"], "second"]
    with pytest.raises(ValidationError) as bad:
        pod_uids(b'[{"metadata": {"name": "a", "namespace": "b"}}]')
    assert "0: pod.metadata.uid is missing" in validation_message(bad.value)
    with pytest.raises(ValidationError) as bad:
        pod_uids(b'{"not": "a list"}')
    assert "valid array" in validation_message(bad.value)
    with pytest.raises(ValidationError) as bad:
        pod_uids(b"[{not json")
    assert bad.value.errors()[0]["type"] == "json_invalid"


def test_status_answers_are_read_for_uids_and_containers() -> None:
    answer = golden("status_response.json")
    assert isinstance(answer, list)
    raw = json.dumps(answer).encode()
    assert status_uids(raw) == [s["UID"] for s in answer]
    assert [pod_state(c) for c in status_containers(raw).values()] == ["running"]
    # upstream's alias and Go's nulls
    go = b'[{"PodUID": "u1", "containers": null}, {"UID": null}]'
    assert status_uids(go) == ["u1", ""]
    assert status_containers(go) == {"u1": [], "": []}
    with pytest.raises(ValidationError) as bad:
        status_uids(b'[{"UID": 7}]')
    assert "UID" in validation_message(bad.value)
    with pytest.raises(ValidationError):
        status_uids(b'{"UID": "u1"}')


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], "pending"),
        ([{"waiting": {"reason": "Queued"}}], "pending"),
        ([{"running": {}}, {"waiting": {}}], "running"),
        ([{"terminated": {"exitCode": 0}}, {"running": {}}], "running"),
        ([{"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 0}}], "succeeded"),
        ([{"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 3}}], "failed"),
        ([{"terminated": {"exitCode": 137}}, {"running": {}}], "failed"),
    ],
)
def test_pod_state_from_container_states(states: list[dict[str, object]], expected: str) -> None:
    assert pod_state([{"name": f"c{i}", "state": s} for i, s in enumerate(states)]) == expected
