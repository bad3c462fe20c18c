"""Small pieces the fault suite (tests/faults/) relies on: a full disk at create is a clear
final error, and the VK's client-credentials token outlives an issuer that went down (a
scripted issuer on loopback; the real one is in tests/faults/test_issuer_down.py)."""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from interlink_core.client import ClientCredentials
from interlink_core.errors import BackendUnavailable, InsufficientStorage, is_final
from interlink_core.jobfiles import new_pod_dir


async def test_a_full_disk_at_create_is_a_final_507_naming_the_directory(tmp_path: Path) -> None:
    with pytest.raises(InsufficientStorage) as caught:
        async with new_pod_dir(tmp_path, "uid-1") as pod_dir:
            (pod_dir / "job.sh").write_text("#!/bin/sh\n")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.status_code == 507
    assert is_final(507)
    assert str(tmp_path) in caught.value.message
    assert "No space left on device" in caught.value.message
    assert not (tmp_path / "uid-1").exists()  # nothing half-written is left


async def test_other_errors_at_create_stay_what_they_are(tmp_path: Path) -> None:
    with pytest.raises(PermissionError):
        async with new_pod_dir(tmp_path, "uid-2"):
            raise PermissionError(errno.EACCES, "Permission denied")
    assert not (tmp_path / "uid-2").exists()


@asynccontextmanager
async def issuer(lifetime: int, grants: list[float]) -> AsyncIterator[str]:
    """A scripted issuer granting tokens of ``lifetime`` s (each grant's time in ``grants``)."""

    async def handler(request: web.BaseRequest) -> web.Response:
        if request.path.endswith("openid-configuration"):
            return web.json_response({"token_endpoint": str(request.url.with_path("/token"))})
        grants.append(time.time())
        return web.json_response({"access_token": f"t{len(grants)}", "expires_in": lifetime})

    server = RawTestServer(handler)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_a_valid_token_is_used_while_the_issuer_is_down() -> None:
    grants: list[float] = []
    async with issuer(60, grants) as url:
        source = ClientCredentials(url, "vk", "secret")
        assert await source() == "t1"
        assert await source() == "t1"  # cached: a one-minute token is not fetched per call
    assert len(grants) == 1
    source._expires = time.time() + 5  # due for renewal (within the last fifth)...
    assert await source() == "t1"  # ...the issuer is gone, the token still valid
    source._expires = time.time() - 1  # expired: the caller learns why
    with pytest.raises(BackendUnavailable, match="cannot reach the issuer"):
        await source()
