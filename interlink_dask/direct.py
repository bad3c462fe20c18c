"""Direct mode: worker pods go straight to an interLink API server (no Kubernetes), for
laptops, Binder and login nodes. Clusters are recorded in files under ``state_dir/clusters``."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from interlink_core.client import InterLinkClient, RemoteError
from interlink_core.errors import BackendUnavailable
from interlink_core.kube import now_rfc3339
from interlink_core.models import JSON, LogStruct, PodCreateRequests, digest_uid

from .backend import Backend, ClusterExists, ClusterRecord
from .config import ClusterOptions, holder_identity
from .pods import WORKER_CONTAINER, worker_pod
from .states import PodDetail, view_of_wire_status


def _records_dir(opts: ClusterOptions) -> Path:
    return opts.state_path / "clusters"


def _alive(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != os.uname().nodename or not pid.isdigit():
        return True  # another machine's process: trust the record
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def direct_records(opts: ClusterOptions) -> list[ClusterRecord]:
    """Live direct-mode clusters recorded on this machine (stale records are removed)."""
    out = []
    folder = _records_dir(opts)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = ClusterRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(record.holder):
            out.append(record)
        else:
            path.unlink(missing_ok=True)
    return out


class DirectBackend(Backend):
    """Pods sent to an interLink API server with :class:`InterLinkClient`."""

    def __init__(self, opts: ClusterOptions) -> None:
        super().__init__(opts)
        d = opts.direct
        assert d.url is not None  # checked by ClusterOptions
        self.client = InterLinkClient(d.url, token=d.token_source(), ca_file=d.ca_file)
        self.pods: dict[str, JSON] = {}
        self.details: dict[str, PodDetail] = {}
        self.edge = urlsplit(d.url).netloc or d.url
        self.record_path = _records_dir(opts) / f"{opts.cluster_name}.json"

    @property
    def route_target(self) -> str | None:
        return self.opts.direct.url

    async def check(self) -> None:
        url = self.opts.direct.url
        try:
            await self.client.ping()
        except RemoteError as exc:
            if exc.status_code in (401, 403):
                raise PermissionError(
                    f"direct.url: the interLink API server at {url} refused the credentials "
                    f"({exc.status_code}: {exc}); set direct.token or direct.token_file"
                ) from None
            raise BackendUnavailable(
                f"direct.url: the interLink API server at {url} answered {exc.status_code}: {exc}"
            ) from None
        except Exception as exc:
            raise BackendUnavailable(
                f"direct.url: cannot reach the interLink API server at {url}: {exc}"
            ) from None
        for record in direct_records(self.opts):
            if record.name == self.opts.cluster_name:
                raise ClusterExists(
                    f"name: a cluster named {record.name!r} is running (held by "
                    f"{record.holder}); choose another name or use "
                    f"InterLinkCluster.from_name({record.name!r})"
                )

    async def publish(self, scheduler: str, dashboard: str) -> None:
        record = ClusterRecord(
            self.opts.cluster_name, "direct", scheduler, dashboard, holder_identity()
        )
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record.__dict__))
        tmp.replace(self.record_path)

    async def create(self, pod_name: str, scheduler: str) -> None:
        pod = worker_pod(
            self.opts,
            pod_name,
            scheduler,
            namespace=self.opts.direct.namespace,
            uid=str(uuid.uuid4()),
        )
        answer = await self.client.create(PodCreateRequests.model_validate({"pod": pod}))
        self.pods[pod_name] = pod
        self.details[pod_name] = PodDetail(answer.PodJID, self.edge, now_rfc3339())

    async def delete(self, pod_name: str) -> None:
        pod = self.pods.pop(pod_name, None)
        self.details.pop(pod_name, None)
        if pod is None:
            return
        try:
            await self.client.delete(pod)
        except RemoteError as exc:
            if exc.status_code != 404:
                raise

    async def logs(self, pod_name: str) -> str:
        pod = self.pods.get(pod_name)
        if pod is None:
            return ""
        meta = pod["metadata"]
        request = LogStruct(
            Namespace=meta["namespace"],
            PodUID=meta["uid"],
            PodName=meta["name"],
            ContainerName=WORKER_CONTAINER,
        )
        return (await self.client.logs(request)).decode(errors="replace")

    async def refresh(self) -> None:
        pods = list(self.pods.values())
        if not pods:
            self.update({})
            return
        answer = await self.client.status_json(pods)
        by_uid = {digest_uid(s): s for s in answer}
        views = {}
        for pod in pods:
            status = by_uid.get(pod["metadata"]["uid"])
            name = pod["metadata"]["name"]
            if status is not None:
                views[name] = view_of_wire_status(status, self.details.get(name, PodDetail()))
        self.update(views)

    async def close(self, shutdown: bool) -> None:
        await super().close(shutdown)
        if shutdown:
            self.record_path.unlink(missing_ok=True)
        await self.client.aclose()
