"""Pod sync: every pod bound to the virtual node goes to the edge, and its remote state comes
back into ``pods/status``.

The loop is level-triggered: each cycle lists the node's pods (one LIST), creates the new ones
(bounded concurrency), deletes the ones marked for deletion (remotely first, then for good with
grace period 0, as a kubelet does) and asks the edge for the status of **all** non-terminal pods
in **one** call. A watch only wakes the loop early. After a restart the same loop re-adopts the
pods by their job-id annotation; creates are idempotent per pod UID at the edge, so nothing is
submitted twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from interlink_core.client import InterLinkClient, RemoteError
from interlink_core.errors import InterLinkError
from interlink_core.models import JSON, PodCreateRequests, PodStatus
from interlink_core.podspec import field_value, object_refs

from .config import JOB_ID_ANNOTATION, UPSTREAM_JOB_ID_ANNOTATION, VKConfig
from .kube import Kube
from .podstatus import TERMINAL_PHASES, display_status, kube_status

log = logging.getLogger("interlink.vk.pods")
TOKEN_SECONDS = 3600


def job_id(pod: JSON) -> str:
    """The remote job id written on the pod (ours, or upstream's annotation)."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(JOB_ID_ANNOTATION) or ann.get(UPSTREAM_JOB_ID_ANNOTATION) or "")


def _uid(pod: JSON) -> str:
    return str(pod["metadata"]["uid"])


def _significant(status: JSON) -> Any:
    """A status without heartbeat-like times, to tell whether a patch is needed."""
    conditions = [
        (c.get("type"), c.get("status"), c.get("reason")) for c in status.get("conditions") or []
    ]
    return (
        status.get("phase"),
        status.get("reason"),
        status.get("podIP"),
        conditions,
        status.get("containerStatuses"),
        status.get("initContainerStatuses"),
    )


@dataclass
class PodController:
    """Keeps the pods of one virtual node in sync with the edge."""

    kube: Kube
    config: VKConfig
    edge: InterLinkClient
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _creating: set[str] = field(default_factory=set)
    _deleting: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _sem: asyncio.Semaphore | None = None

    @property
    def node(self) -> str:
        return self.config.node_name

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile until ``stop`` is set."""
        self._sem = asyncio.Semaphore(self.config.create_concurrency)
        watcher = asyncio.create_task(self._watch(stop))
        try:
            while not stop.is_set():
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("pod sync cycle failed; retrying")
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._either(stop), self.config.status_interval_seconds)
        finally:
            watcher.cancel()
            for t in list(self._tasks):
                t.cancel()

    async def _either(self, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _watch(self, stop: asyncio.Event) -> None:
        """Wake the loop on any change to the node's pods (reconnecting as needed)."""
        while not stop.is_set():
            try:
                async for _event, _obj in self.kube.api.watch(
                    "pods", namespace="all", field_selector=f"spec.nodeName={self.node}"
                ):
                    self.wake.set()
            except Exception as exc:
                log.debug("pod watch ended (%s); restarting", exc)
            await asyncio.sleep(1)

    async def reconcile(self) -> None:
        """One cycle: create, delete, then one status call for all non-terminal pods."""
        pods = await self.kube.pods_on_node(self.node)
        tracked: list[JSON] = []
        for pod in pods:
            uid = _uid(pod)
            phase = (pod.get("status") or {}).get("phase")
            if pod["metadata"].get("deletionTimestamp"):
                if uid not in self._deleting:
                    self._spawn(self._delete(pod), self._deleting, uid)
            elif phase in TERMINAL_PHASES:
                continue
            elif job_id(pod):
                tracked.append(pod)
            elif uid not in self._creating:
                self._spawn(self._create(pod), self._creating, uid)
        if tracked:
            await self._sync_status(tracked)

    def _spawn(self, coro: Any, busy: set[str], uid: str) -> None:
        busy.add(uid)

        async def guarded() -> None:
            try:
                assert self._sem is not None
                async with self._sem:
                    await coro
            except Exception:
                log.exception("pod %s: operation failed", uid)
            finally:
                busy.discard(uid)
                self.wake.set()

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- create -------------------------------------------------------------------------------

    async def _create(self, pod: JSON) -> None:
        meta = pod["metadata"]
        try:
            request = await self._create_request(pod)
        except _Missing as exc:
            await self.kube.event(pod, "FailedMount", str(exc), self.node, warning=True)
            return  # retried next cycle, as a kubelet waits for the object to appear
        try:
            answer = await self.edge.create(request)
        except (RemoteError, InterLinkError) as exc:
            status = getattr(exc, "status_code", 0)
            if status and status < 500:
                await self._fail(pod, "ProviderFailed", f"the edge refused the pod: {exc}")
                return
            await self.kube.event(pod, "ProviderUnavailable", str(exc), self.node, warning=True)
            return  # the edge is down: retried next cycle (creates are idempotent per UID)
        await self.kube.patch_pod(
            pod, {"metadata": {"annotations": {JOB_ID_ANNOTATION: answer.PodJID}}}
        )
        await self.kube.event(
            pod, "Submitted", f"submitted to the edge as job {answer.PodJID}", self.node
        )
        log.info("pod %s/%s submitted as job %s", meta["namespace"], meta["name"], answer.PodJID)

    async def _fail(self, pod: JSON, reason: str, message: str) -> None:
        await self.kube.patch_pod(
            pod, {"status": {"phase": "Failed", "reason": reason, "message": message}}, status=True
        )
        await self.kube.event(pod, reason, message, self.node, warning=True)

    async def _create_request(self, pod: JSON) -> PodCreateRequests:
        """The pod with the ConfigMaps, Secrets and projected volumes it refers to."""
        ns = pod["metadata"]["namespace"]
        spec = pod.get("spec") or {}
        volumes = spec.get("volumes") or []
        projected = [await self._projected(pod, v) for v in volumes if "projected" in v]
        refs = object_refs(
            [*(spec.get("initContainers") or []), *(spec.get("containers") or [])],
            [v for v in volumes if "projected" not in v],  # those are shipped resolved
        )
        cms = await self._fetch("configmaps", ns, refs.configmaps)
        secrets = await self._fetch("secrets", ns, refs.secrets)
        return PodCreateRequests(
            pod=pod, configmaps=cms, secrets=secrets, projectedvolumesmaps=projected
        )

    async def _fetch(self, kind: str, ns: str, wanted: dict[str, bool]) -> list[JSON]:
        """The objects that exist; a missing required one is :class:`_Missing`."""
        found = []
        for name, required in wanted.items():
            obj = await self.kube.get(kind, ns, name)
            if obj is None and required:
                raise _Missing(f"{kind.removesuffix('s')} {ns}/{name} not found")
            if obj is not None:
                found.append(obj)
        return found

    async def _items(self, kind: str, ns: str, ref: JSON) -> dict[str, str]:
        """A projected ConfigMap or Secret source as file path → text."""
        found = await self._fetch(kind, ns, {ref["name"]: not ref.get("optional")})
        values = (found[0].get("data") or {}) if found else {}
        items = ref.get("items") or [{"key": k, "path": k} for k in values]
        out = {}
        for it in items:
            if it["key"] in values:
                value = values[it["key"]]
                if kind == "secrets":
                    value = base64.b64decode(value).decode(errors="replace")
                out[it.get("path", it["key"])] = value
        return out

    async def _projected(self, pod: JSON, volume: JSON) -> JSON:
        """A projected volume as upstream ships it: a ConfigMap named after the volume whose
        data maps each file path to its content (service-account token from TokenRequest)."""
        ns = pod["metadata"]["namespace"]
        data: dict[str, str] = {}
        for src in volume["projected"].get("sources") or []:
            if "serviceAccountToken" in src:
                sat = src["serviceAccountToken"]
                data[sat.get("path", "token")] = await self._token(pod, sat)
            elif "configMap" in src:
                data.update(await self._items("configmaps", ns, src["configMap"]))
            elif "secret" in src:
                data.update(await self._items("secrets", ns, src["secret"]))
            elif "downwardAPI" in src:
                for it in src["downwardAPI"].get("items") or []:
                    if "fieldRef" in it:
                        data[it["path"]] = field_value(
                            pod, it["fieldRef"]["fieldPath"], "", f"volume {volume['name']}"
                        )
        return {"metadata": {"name": volume["name"], "namespace": ns}, "data": data}

    async def _token(self, pod: JSON, source: JSON) -> str:
        """A service-account token bound to the pod, with a normal expiry (TokenRequest)."""
        meta = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        spec: JSON = {
            "expirationSeconds": int(source.get("expirationSeconds") or TOKEN_SECONDS),
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        answer = await self.kube.call(
            "POST", f"serviceaccounts/{sa}/token", namespace=meta["namespace"], body={"spec": spec}
        )
        return str(answer["status"]["token"])

    # --- status -------------------------------------------------------------------------------

    async def _sync_status(self, pods: list[JSON]) -> None:
        try:
            remote = await self.edge.status(pods)
        except InterLinkError as exc:
            log.warning("status from the edge failed (%s); pods keep their last state", exc)
            return
        by_uid: dict[str, PodStatus] = {s.UID: s for s in remote}
        for pod in pods:
            answer = by_uid.get(_uid(pod))
            if answer is None:
                await self._fail(
                    pod, "ProviderLost", f"the edge no longer knows job {job_id(pod)} of this pod"
                )
                continue
            new = kube_status(pod, answer)
            old = pod.get("status") or {}
            if _significant(new) == _significant(old):
                continue
            await self.kube.patch_pod(pod, {"status": new}, status=True)
            before, after = old.get("phase"), new["phase"]
            if before != after:
                shown = display_status(new)
                if after == "Running":
                    await self.kube.event(pod, "Started", "containers started remotely", self.node)
                elif after == "Failed":
                    await self.kube.event(
                        pod, "Failed", new.get("message", shown), self.node, warning=True
                    )
                elif after == "Succeeded":
                    await self.kube.event(pod, "Completed", "all containers completed", self.node)

    # --- delete -------------------------------------------------------------------------------

    async def _delete(self, pod: JSON) -> None:
        if job_id(pod):
            try:
                await self.edge.delete(pod)
            except RemoteError as exc:
                if exc.status_code != 404:
                    await self.kube.event(pod, "FailedKilling", str(exc), self.node, warning=True)
                    return  # retried next cycle
            except InterLinkError as exc:
                await self.kube.event(pod, "FailedKilling", str(exc), self.node, warning=True)
                return
        await self.kube.delete_pod_now(pod)
        log.info("pod %s/%s deleted", pod["metadata"]["namespace"], pod["metadata"]["name"])


class _Missing(Exception):
    """A ConfigMap or Secret the pod needs does not exist (yet)."""
