"""Property-based fuzzing of the API server from its own OpenAPI document: no input may cause a
5xx (the plugin behind it is the real local plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

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


@pytest.fixture(scope="module")
def api_schema(edge: Service) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(edge.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_input_causes_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
