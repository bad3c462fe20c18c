"""Property-based fuzzing of the API server from its own OpenAPI document: no input may cause a
5xx (the plugin behind it is the real local plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.helpers.world import Service, start_api, start_plugin

pytestmark = pytest.mark.integration
TOKEN = "schemathesis-dev-token"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("fuzz")
    plugin = start_plugin(root / "plugin")
    api = start_api(
        root / "api", {"plugin": {"url": plugin.url}, "auth": {"insecure_dev_token": TOKEN}}
    )
    yield api
    api.stop()
    plugin.stop()


def test_no_input_causes_a_server_error(edge: Service) -> None:
    schema = schemathesis.openapi.from_url(edge.url + "/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        fuzz()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /create", "DELETE /delete", "GET /status", "GET /getLogs"} <= set(checked)
