"""The REST routes and the live stream under ``{base_url}interlink/api/`` (see
docs/jupyter-api.md). Each route is a small handler; the work is done by :class:`Live`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from interlink_core.errors import ConfigError
from interlink_core.models import JSON

from .errors import InputError
from .live import Live

AUTH_RESOURCE = "interlink"
LOG_POLL = 1.0
"""Seconds between reads of a followed log."""
TEXT = "text/plain; charset=utf-8"
MAX_ROW_CLUSTERS = 50
"""How many clusters' worker rows one stream may follow."""


class Route(APIHandler):
    """Base of the REST routes: the server's auth, JSON in and out, ``{"error"}`` answers."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, live: Live) -> None:
        self.live = live

    def body(self) -> JSON:
        """The request's JSON object (400 naming the problem otherwise)."""
        raw = self.request.body or b"{}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"the request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"the request body must be a JSON object, not {type(data).__name__}")
        return data

    def reply(self, data: Any, status: int = 200) -> None:
        """Answer ``data`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as ``{"error": ...}`` (also the server's own 403/404/405)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, InputError):
            self.set_status(exc.status)
            body = exc.as_json()
        elif isinstance(exc, web.HTTPError):
            body = {"error": exc.log_message or exc.reason or self._reason}
        else:
            body = {"error": f"internal error: {exc}" if exc else self._reason}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """An :class:`InputError` answers with its own status."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, InputError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Bad input is the caller's problem: no traceback in the server log."""
        if isinstance(value, InputError):
            self.log.info("interlink: %s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)


class NodesRoute(Route):
    """``GET nodes``: virtual nodes and direct-mode edges."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.live.nodes.refresh())


class ConfigRoute(Route):
    """``GET config``: the create form's defaults (from the user's dask config)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            opts = self.live.options()
        except ConfigError as exc:
            raise InputError(str(exc)) from None
        defaults = {
            "mode": opts.mode,
            "node": opts.node,
            "image": opts.image,
            "cpu": opts.cpu,
            "memory": opts.memory,
            "processes": opts.processes,
        }
        self.reply({"defaults": defaults, "max_workers": self.live.clusters.max_workers})


class ClustersRoute(Route):
    """``GET clusters`` (every live cluster) and ``POST clusters`` (a new one)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.live.clusters.refresh()
        self.reply(self.live.clusters.clusters_message())

    @web.authenticated
    @authorized
    async def post(self) -> None:
        entry = await self.live.clusters.create(self.body())
        self.reply(entry.as_detail(), status=201)


class ClusterRoute(Route):
    """``GET clusters/{name}`` (summary and worker rows), ``DELETE`` (close it)."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply((await self.live.clusters.entry(name)).as_detail())

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.live.clusters.remove(name)
        self.set_status(204)
        self.finish()


class ScaleRoute(Route):
    """``POST clusters/{name}/scale`` with ``workers`` or ``jobs``."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        entry = await self.live.clusters.scale(name, self.body())
        self.reply(entry.as_summary())


class AdaptRoute(Route):
    """``PUT clusters/{name}/adapt`` (bounds), ``DELETE`` (back to manual scaling)."""

    @web.authenticated
    @authorized
    async def put(self, name: str) -> None:
        entry = await self.live.clusters.adapt(name, self.body())
        self.reply(entry.as_summary())

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        entry = await self.live.clusters.stop_adapt(name)
        self.reply(entry.as_summary())


def _tail(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise InputError(f"tail must be a whole number of lines, not {value!r}", field="tail")
    return int(value)


def _flag(value: str | None, name: str) -> bool:
    if value in (None, "", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise InputError(f"{name} must be true or false, not {value!r}", field=name)


class LogsRoute(Route):
    """``GET clusters/{name}/pods/{pod}/logs?tail=N&follow=true``: the worker container's
    log as text, streamed while following until the container ends."""

    _gone = False

    def on_connection_close(self) -> None:
        self._gone = True

    @web.authenticated
    @authorized
    async def get(self, name: str, pod: str) -> None:
        tail = _tail(self.get_argument("tail", None))
        follow = _flag(self.get_argument("follow", None), "follow")
        book = self.live.clusters
        answer = await book.logs(name, pod, tail)
        self.set_header("Content-Type", TEXT)
        self.set_header("Cache-Control", "no-cache")
        self.write(answer["text"])
        if not follow:
            self.finish(set_content_type=TEXT)
            return
        await self.flush()
        while not self._gone:
            if answer["finished"]:
                break
            await asyncio.sleep(LOG_POLL)
            try:
                answer = await book.logs(name, pod, None, since=answer["size"])
            except InputError:  # the cluster or pod is gone: the log ends here
                break
            if answer["text"]:
                self.write(answer["text"])
                await self.flush()
        if not self._gone:
            self.finish(set_content_type=TEXT)


class StreamRoute(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    """``stream``: one WebSocket per sidebar; see docs/jupyter-api.md for the messages."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, live: Live) -> None:
        self.live = live
        self.rows: set[str] = set()

    def set_default_headers(self) -> None:
        """No JupyterHandler headers on a WebSocket."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        await super().get(*args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        await self.live.subscribe(self)
        self.deliver("nodes", self.live.nodes.answer)
        self.deliver("clusters", self.live.clusters.clusters_message())

    def deliver(self, kind: str, message: JSON) -> None:
        """Send one change to this browser."""
        if kind == "cluster":
            entry = self.live.clusters.entries.get(message["name"])
            if entry is None:
                return
            out: JSON = {"type": "cluster", "cluster": entry.as_summary()}
            if entry.name in self.rows:
                out["rows"] = entry.rows
        else:
            out = {"type": kind, **message}
        try:
            self.write_message(json.dumps(out))
        except WebSocketClosedError:
            self.live.unsubscribe(self)

    def on_message(self, message: str | bytes) -> None:
        """``{"type": "rows", "clusters": [...]}``: which clusters' rows to stream."""
        try:
            data = json.loads(message)
            names = data["clusters"] if data.get("type") == "rows" else None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError
        except (ValueError, TypeError, KeyError, AttributeError):
            self.write_message(
                json.dumps(
                    {"type": "error", "error": 'expected {"type": "rows", "clusters": [names]}'}
                )
            )
            return
        self.rows = set(names[:MAX_ROW_CLUSTERS])
        for name in sorted(self.rows):
            self.deliver("cluster", {"name": name})

    def on_close(self) -> None:
        self.live.unsubscribe(self)


def routes(live: Live) -> list[tuple[str, type[Any], dict[str, Any]]]:
    """The URL patterns (relative to the server's base URL)."""
    name = r"(?P<name>[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)"
    pod = r"(?P<pod>[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)"
    table: list[tuple[str, type[Any]]] = [
        (r"interlink/api/nodes", NodesRoute),
        (r"interlink/api/config", ConfigRoute),
        (r"interlink/api/clusters", ClustersRoute),
        (rf"interlink/api/clusters/{name}", ClusterRoute),
        (rf"interlink/api/clusters/{name}/scale", ScaleRoute),
        (rf"interlink/api/clusters/{name}/adapt", AdaptRoute),
        (rf"interlink/api/clusters/{name}/pods/{pod}/logs", LogsRoute),
        (r"interlink/api/stream", StreamRoute),
    ]
    return [(pattern, handler, {"live": live}) for pattern, handler in table]
