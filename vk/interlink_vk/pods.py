"""Pod sync: every pod bound to the virtual node goes to the edge, and its remote state comes
back into ``pods/status``.

The node's pods are held as an informer holds them: one LIST (read in pages) when the VK
starts, then a watch from that LIST's resourceVersion keeps them current; only a watch the
server no longer can resume (410 Gone) causes another LIST. Pods are held as compact JSON
(:mod:`.held`): at 10,000 pods a LIST per cycle and the parsed pods were most of the VK's memory.

The loop is level-triggered: a cycle creates the new pods (bounded concurrency) and deletes the
ones marked for deletion (remotely first, then for good with grace period 0, as a kubelet does).
The watch wakes it when a pod needs either, not for the echo of its own patches.
Every ``status_interval_seconds`` it asks the edge for the status of **all** non-terminal pods in
**one** call; in between, while some pods are submitted but not Running yet (or are being
deleted), it asks for the status of just those, again in one call, every
``pending_status_interval_seconds``; every ``fresh_status_interval_seconds`` instead while one of
them was submitted less than ``fresh_status_seconds`` ago, as most jobs start within a second or
two of their submission (spaced by twice the time the last status call took, so a burst of
creates does not queue status calls back to back). A create the edge could not take is tried
again at the next full cycle.
After a restart the same loop re-adopts the pods by their job-id annotation; creates are
idempotent per pod UID at the edge, so nothing is submitted twice.

Every pod that leaves Kubernetes gets exactly one delete at the edge, whatever its phase: one
being deleted is deleted remotely before it goes; one that went without the VK (a pod that
ended is removed by the apiserver at once) is owed a delete, kept on the node
(:mod:`.owed`) until the edge took it.
A pod missing from a status answer keeps its last state (plugins may answer from a cache that
does not know new pods yet); only after ``lost_after_seconds``, and if a status call for it
alone leaves it out too, is it Failed with reason ``ProviderLost``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from interlink_core.client import InterLinkClient, RemoteError
from interlink_core.errors import InterLinkError, is_final
from interlink_core.models import JSON, PodCreateRequests, PodStatus
from interlink_core.podspec import field_value, object_refs

from .config import JOB_ID_ANNOTATION, VKConfig
from .held import Held, batches, encoded
from .kube import Kube, WatchExpired, status_code
from .metrics import VKMetrics
from .owed import Owed, OwedDeletes
from .podstatus import display_status, kube_status
from .remote_events import RemoteEvents
from .tokens import adopted_refresh_at, refresh_at, token_lifetime

log = logging.getLogger("interlink.vk.pods")
WATCH_RETRY_SECONDS = 1.0
WATCH_FAILURES_BEFORE_LIST = 3  # watches in a row that failed before a new LIST


def _unknown_at_edge(exc: InterLinkError) -> bool:
    """Whether a delete failed only because the edge does not know the pod (404): done."""
    return isinstance(exc, RemoteError) and exc.status_code == 404


def _canonical(value: Any) -> Any:
    """``value`` without empty members (``None``, ``{}``, ``[]``), which the apiserver adds or
    drops when it stores a status (``lastState: {}``, ``initContainerStatuses: []``)."""
    if isinstance(value, dict):
        kept = {k: _canonical(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


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
        _canonical(status.get("containerStatuses") or []),
        _canonical(status.get("initContainerStatuses") or []),
    )


@dataclass
class PodController:
    """Keeps the pods of one virtual node in sync with the edge."""

    kube: Kube
    config: VKConfig
    edge: InterLinkClient
    metrics: VKMetrics
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    listed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first LIST is in: the pods held are the node's."""
    _pods: dict[str, Held] = field(default_factory=dict)  # by UID: the watch's + our patches
    _creating: set[str] = field(default_factory=set)
    _retry_create: set[str] = field(default_factory=set)  # UIDs the edge could not take yet
    _deleting: set[str] = field(default_factory=set)
    _refused: dict[str, tuple[int, float]] = field(default_factory=dict)  # UID: tries, not before
    _fresh: dict[str, float] = field(default_factory=dict)  # UID: loop time of its submission
    _status_took: float = 0.0  # seconds the last edge status call took
    _token_due: dict[str, float] = field(default_factory=dict)  # UID: epoch time of refresh
    _refreshing: set[str] = field(default_factory=set)
    _no_refresh: set[str] = field(default_factory=set)  # UIDs whose edge cannot update volumes
    _missing: dict[str, float] = field(default_factory=dict)  # UID: when answers began to omit it
    _edge_events: RemoteEvents = field(default_factory=RemoteEvents)
    owed: OwedDeletes = field(init=False)
    """The deletes the edge is still owed (pods gone from Kubernetes)."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _sem: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        self.owed = OwedDeletes(self.kube, self.config.node_name)

    @property
    def node(self) -> str:
        return self.config.node_name

    def leased(self) -> list[JSON]:
        """The node's pods that name a heartbeat Lease, as held now (for the reaper)."""
        return [h.pod() for h in self._pods.values() if h.lease]

    def tracked(self) -> list[Held]:
        """Pods submitted to the edge, not terminal and not being deleted."""
        return [h for h in self._pods.values() if h.tracked]

    def pending(self) -> list[Held]:
        """Tracked pods that are not Running yet and were created less than
        ``pending_status_seconds`` ago: the ones the pending cycle asks about. Older ones (jobs
        that wait in a batch queue) wait for the full cycle, so a queue of thousands does not
        travel to the edge twice a second."""
        horizon = time.time() - self.config.pending_status_seconds
        return [h for h in self.tracked() if h.phase != "Running" and h.created > horizon]

    def hurry(self) -> bool:
        """Whether the fast (pending) cycle should run: a pod waits to run or to be deleted."""
        return bool(self.pending()) or any(h.deleting for h in self._pods.values())

    def fast_interval(self, now: float) -> float:
        """Seconds between pending status cycles: short while a pending pod is fresh."""
        horizon = now - self.config.fresh_status_seconds
        self._fresh = {u: t for u, t in self._fresh.items() if t > horizon and u in self._pods}
        if any(h.uid in self._fresh for h in self.pending()):
            spaced = max(self.config.fresh_status_interval_seconds, 2 * self._status_took)
            return min(spaced, self.config.pending_status_interval_seconds)
        return self.config.pending_status_interval_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile until ``stop`` is set."""
        self._sem = asyncio.Semaphore(self.config.create_concurrency)
        try:
            await self.owed.load()
        except Exception as exc:  # the API is down: nothing owed is known yet
            log.warning("owed deletes of node %s not read: %s", self.node, exc)
        watcher = asyncio.create_task(self._watch(stop))
        loop = asyncio.get_running_loop()
        try:
            await self._either(stop, self.listed)
            next_full = last_fast = loop.time()
            next_fast = last_fast
            while not stop.is_set():
                now = loop.time()
                full, fast = now >= next_full, now >= next_fast
                self.wake.clear()  # before the cycle: a change during it wakes the next one
                try:
                    self._start(full)
                    await self.owed.save()
                    if full:
                        await self.sync_status(self.tracked(), "full")
                        self._refresh_tokens()
                    elif fast:
                        await self.sync_status(self.pending(), "pending")
                except Exception:
                    log.exception("pod sync cycle failed; retrying")
                self.metrics.count_pods(h.phase for h in self._pods.values())
                if full:
                    next_full = now + self.config.status_interval_seconds
                if full or fast:
                    last_fast = now
                # after every cycle: a create that completed makes its pod fresh
                next_fast = last_fast + self.fast_interval(loop.time())
                due = min(next_full, next_fast) if self.hurry() else next_full
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._either(stop, self.wake), max(0.0, due - loop.time())
                    )
        finally:
            watcher.cancel()
            for t in list(self._tasks):
                t.cancel()

    @staticmethod
    async def _either(*events: asyncio.Event) -> None:
        waits = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    # --- the node's pods ----------------------------------------------------------------------

    async def _watch(self, stop: asyncio.Event) -> None:
        """Keep the held pods current: a LIST, then a watch from its resourceVersion, resumed
        from the last version seen when it ends or fails, and a new LIST when the server
        cannot resume it (410) or the watch failed three times in a row."""
        version, failures = "", 0
        while not stop.is_set():
            try:
                if not version:
                    version = await self.relist()
                async for event, obj in self.kube.watch_pods_on_node(self.node, version):
                    version, failures = self._saw(event, obj) or version, 0
                continue  # the server ended the watch (its timeout): resume at once
            except WatchExpired as exc:
                log.info("pod watch of node %s expired (%s); listing again", self.node, exc)
                version = ""
                continue
            except Exception as exc:
                failures += 1
                if status_code(exc) == 410 or failures >= WATCH_FAILURES_BEFORE_LIST:
                    version = ""  # what the watch may have missed comes with a new LIST
                log.warning("pod watch of node %s failed (%s); resuming", self.node, exc)
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    def _saw(self, event: str, obj: JSON) -> str:
        """Take one watch event into the pods held; wake the loop if the pod needs it. Returns
        the resourceVersion to resume from."""
        meta = obj.get("metadata") or {}
        version = str(meta.get("resourceVersion") or "")
        if event == "BOOKMARK":
            return version
        if event == "DELETED":
            self._gone(str(meta.get("uid")))
            return version
        seen = Held.of(obj)
        held = self._pods.get(seen.uid)
        if held is not None and not held.older_than(seen):
            return version  # the echo of our own patch, or older than it
        self._pods[seen.uid] = seen
        if seen.new or seen.deleting:
            self.wake.set()
        return version

    def _gone(self, uid: str) -> None:
        """A pod left Kubernetes: without a delete of ours, the edge is owed one."""
        held = self._pods.pop(uid, None)
        if held is not None and held.job and uid not in self._deleting:
            self.owed.add(Owed.of(held.pod()))
            self.wake.set()
        self._forget(uid)

    def _forget(self, uid: str) -> None:
        for table in (self._missing, self._refused, self._token_due):
            table.pop(uid, None)
        self._no_refresh.discard(uid)
        self._retry_create.discard(uid)
        self._edge_events.forget(uid)

    async def relist(self) -> str:
        """List the node's pods (a page at a time) and hold them; a pod held before and gone
        from the LIST went without a delete of ours. Returns the LIST's resourceVersion."""
        listed: dict[str, Held] = {}
        version = ""
        async for page, at in self.kube.pages_of_pods_on_node(self.node):
            version = at
            for pod in page:
                held = Held.of(pod)
                listed[held.uid] = held
        for uid, before in list(self._pods.items()):
            now = listed.get(uid)
            if now is None:
                self._gone(uid)
            elif not before.older_than(now):
                listed[uid] = before  # a patch answer later than the LIST
        self._pods = listed
        self.listed.set()
        self.wake.set()
        return version

    def _start(self, full: bool) -> None:
        """Start the deletions due (one the edge refused is tried again after a backoff), the
        deletes owed, and the creations of new pods (one the edge could not take is tried again
        at the next ``full`` cycle)."""
        now = time.monotonic()
        for uid, held in list(self._pods.items()):
            if held.deleting and uid not in self._deleting:
                if now >= self._refused.get(uid, (0, 0.0))[1]:
                    self._spawn(self._delete(held), self._deleting, uid)
            elif held.new and uid not in self._creating and (full or uid not in self._retry_create):
                self._spawn(self._create(held), self._creating, uid)
        for item in self.owed.due():
            if item.uid not in self._deleting:
                self._spawn(self._delete_owed(item), self._deleting, item.uid)

    def _backoff(self, uid: str) -> None:
        """Remember a refused deletion: the next try waits longer, up to the slow interval."""
        tries = self._refused.get(uid, (0, 0.0))[0] + 1
        wait = self.config.pending_status_interval_seconds * 2**tries
        self._refused[uid] = (
            tries,
            time.monotonic() + min(wait, self.config.status_interval_seconds),
        )

    def _spawn(self, coro: Coroutine[Any, Any, bool], busy: set[str], uid: str) -> None:
        """Run ``coro`` (bounded concurrency); wake the loop when it completed its work (one
        that must be retried waits for the next cycle instead of spinning)."""
        busy.add(uid)

        async def guarded() -> None:
            done = False
            try:
                assert self._sem is not None
                async with self._sem:
                    done = await coro
            except Exception:
                log.exception("pod %s: operation failed", uid)
            finally:
                busy.discard(uid)
                if done:
                    self.wake.set()

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember(self, pod: JSON) -> None:
        """Keep the answer of a patch as the pod's latest known state (unless the watch
        already brought a later one)."""
        held = self._pods.get(str(pod.get("metadata", {}).get("uid")))
        if held is not None:
            answer = Held.of(pod)
            if held.older_than(answer):
                self._pods[answer.uid] = answer

    # --- create -------------------------------------------------------------------------------

    async def _create(self, held: Held) -> bool:
        """Submit the pod; False when it must be tried again (at the next full cycle)."""
        self._retry_create.add(held.uid)  # unless it went through
        done = await self._submit(held.pod())
        if done:
            self._retry_create.discard(held.uid)
        return done

    async def _submit(self, pod: JSON) -> bool:
        """Send the pod to the edge and annotate it with its job id; False when it must be
        tried again later."""
        meta = pod["metadata"]
        try:
            request = await self._create_request(pod)
        except _Missing as exc:
            await self.kube.event(pod, "FailedMount", str(exc), self.node, warning=True)
            return False  # retried next cycle, as a kubelet waits for the object to appear
        try:
            async with self.metrics.edge_call("create"):
                answer = await self.edge.create(request)
        except (RemoteError, InterLinkError) as exc:
            status = getattr(exc, "status_code", 0)
            if status and is_final(status):
                await self._fail(pod, "ProviderFailed", f"the edge refused the pod: {exc}")
                return True
            await self.kube.event(pod, "ProviderUnavailable", str(exc), self.node, warning=True)
            return False  # the edge is down: retried next cycle (creates are idempotent per UID)
        try:
            patched = await self.kube.patch_pod(
                pod, {"metadata": {"annotations": {JOB_ID_ANNOTATION: answer.PodJID}}}
            )
        except Exception as exc:
            if status_code(exc) != 404:
                raise
            self.owed.add(Owed.of(pod, answer.PodJID))  # the pod went while it was submitted
            return True
        self._remember(patched)
        self._fresh[str(meta["uid"])] = asyncio.get_running_loop().time()
        await self.kube.event(
            pod, "Submitted", f"submitted to the edge as job {answer.PodJID}", self.node
        )
        log.info("pod %s/%s submitted as job %s", meta["namespace"], meta["name"], answer.PodJID)
        return True

    async def _fail(self, pod: JSON, reason: str, message: str) -> None:
        self._remember(
            await self.kube.patch_pod(
                pod,
                {"status": {"phase": "Failed", "reason": reason, "message": message}},
                status=True,
            )
        )
        await self.kube.event(pod, reason, message, self.node, warning=True)

    async def _create_request(self, pod: JSON) -> PodCreateRequests:
        """The pod with the ConfigMaps, Secrets and projected volumes it refers to."""
        ns = pod["metadata"]["namespace"]
        spec = pod.get("spec") or {}
        volumes = spec.get("volumes") or []
        refs = object_refs(
            [*(spec.get("initContainers") or []), *(spec.get("containers") or [])],
            [v for v in volumes if "projected" not in v],  # those are shipped resolved
        )
        # all the reads at once: each is a round trip to the apiserver, on the pod's way out
        projected, cms, secrets = await asyncio.gather(
            asyncio.gather(*(self._projected(pod, v) for v in volumes if "projected" in v)),
            self._fetch("configmaps", ns, refs.configmaps),
            self._fetch("secrets", ns, refs.secrets),
        )
        return PodCreateRequests(
            pod=pod, configmaps=cms, secrets=secrets, projectedvolumesmaps=list(projected)
        )

    async def _fetch(self, kind: str, ns: str, wanted: dict[str, bool]) -> list[JSON]:
        """The objects that exist; a missing required one is :class:`_Missing`."""
        found = []
        objs = await asyncio.gather(*(self.kube.get(kind, ns, name) for name in wanted))
        for (name, required), obj in zip(wanted.items(), objs, strict=True):
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
        data: dict[str, str] = {}
        sources = volume["projected"].get("sources") or []
        # fetched at once, merged in the sources' order (a later one wins on the same path)
        for part in await asyncio.gather(*(self._source(pod, volume, s) for s in sources)):
            data.update(part)
        return {
            "metadata": {"name": volume["name"], "namespace": pod["metadata"]["namespace"]},
            "data": data,
        }

    async def _source(self, pod: JSON, volume: JSON, src: JSON) -> dict[str, str]:
        """One source of a projected volume as file path → text."""
        ns = pod["metadata"]["namespace"]
        if "serviceAccountToken" in src:
            sat = src["serviceAccountToken"]
            return {sat.get("path", "token"): await self._token(pod, sat)}
        if "configMap" in src:
            return await self._items("configmaps", ns, src["configMap"])
        if "secret" in src:
            return await self._items("secrets", ns, src["secret"])
        items = (src.get("downwardAPI") or {}).get("items") or []
        return {
            it["path"]: field_value(
                pod, it["fieldRef"]["fieldPath"], "", f"volume {volume['name']}"
            )
            for it in items
            if "fieldRef" in it
        }

    async def _token(self, pod: JSON, source: JSON) -> str:
        """A service-account token bound to the pod, with a normal expiry (TokenRequest)."""
        meta = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        spec: JSON = {
            "expirationSeconds": token_lifetime(source),
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
        due = refresh_at(time.time(), spec["expirationSeconds"], self.config.token_refresh_fraction)
        self._token_due[meta["uid"]] = min(due, self._token_due.get(meta["uid"], due))
        return str(answer["status"]["token"])

    # --- token refresh ------------------------------------------------------------------------

    def _refresh_tokens(self) -> None:
        """Start a refresh for every running pod whose service-account tokens are due."""
        now = time.time()
        fraction = self.config.token_refresh_fraction
        for held in self.tracked():
            uid = held.uid
            if uid in self._refreshing or uid in self._no_refresh:
                continue
            pod = held.pod()
            due = self._token_due.get(uid)
            if due is None:
                due = adopted_refresh_at(pod, fraction)
                if due is None:  # no token in this pod
                    self._no_refresh.add(uid)
                    continue
                self._token_due[uid] = due
            if now >= due:
                self._spawn(self._refresh(pod), self._refreshing, uid)

    async def _refresh(self, pod: JSON) -> bool:
        """New tokens (and the current ConfigMaps and Secrets) for a running pod's volumes,
        sent to the edge; a failure is retried at the next full cycle."""
        uid = str(pod["metadata"]["uid"])
        retry = time.time() + self.config.status_interval_seconds
        self._token_due.pop(uid, None)
        try:
            request = await self._create_request(pod)
            async with self.metrics.edge_call("updateVolumes"):
                await self.edge.update_volumes(request)
        except _Missing as exc:
            self._token_due[uid] = retry
            await self.kube.event(pod, "FailedMount", str(exc), self.node, warning=True)
            return False
        except (RemoteError, InterLinkError) as exc:
            if getattr(exc, "status_code", 0) == 501:
                self._no_refresh.add(uid)
                message = f"service-account tokens cannot be refreshed remotely: {exc}"
                await self.kube.event(
                    pod, "TokenRefreshUnsupported", message, self.node, warning=True
                )
            else:
                self._token_due[uid] = retry  # the new tokens did not arrive
                log.warning("pod %s: token refresh failed (%s); retrying", uid, exc)
            return False
        log.info(
            "pod %s/%s: volumes refreshed", pod["metadata"]["namespace"], pod["metadata"]["name"]
        )
        return False

    # --- status -------------------------------------------------------------------------------

    async def sync_status(self, pods: list[Held], kind: str) -> None:
        """One status call for ``pods`` (more if their JSON passes ``status_call_max_bytes``);
        their changed statuses patched, with Events."""
        if not pods:
            return
        t0 = time.perf_counter()
        by_uid: dict[str, PodStatus] = {}
        try:  # one call, unless the body would pass status_call_max_bytes
            full = self.config.status_pods == "full"
            for run in batches(pods, self.config.status_call_max_bytes, full):
                async with self.metrics.edge_call("status"):
                    answer = await self.edge.status(encoded(run, full))
                by_uid.update((s.UID, s) for s in answer)
        except InterLinkError as exc:
            log.warning("status from the edge failed (%s); pods keep their last state", exc)
            return
        finally:
            self._status_took = time.perf_counter() - t0
        # not self._sem: the loop's own patches must not queue behind a burst of creates
        sem = asyncio.Semaphore(self.config.create_concurrency)

        async def one(uid: str) -> None:
            async with sem:
                held = self._pods.get(uid)
                if held is None:
                    return  # deleted meanwhile
                answer = by_uid.get(uid)
                try:
                    if answer is None:
                        await self._unanswered(held)
                    else:
                        self._missing.pop(uid, None)
                        await self._apply(held.pod(), answer)
                except Exception as exc:  # one pod's patch does not hold up the others
                    log.warning("status of %s/%s not written: %r", held.namespace, held.name, exc)

        await asyncio.gather(*(one(h.uid) for h in pods))
        self.metrics.status_cycle.labels(kind).observe(time.perf_counter() - t0)

    async def _unanswered(self, held: Held) -> None:
        """A pod the edge's answer left out keeps its last state; once that lasted
        ``lost_after_seconds`` it is asked about alone, and Failed (``ProviderLost``) if the
        edge still leaves it out."""
        uid, now = held.uid, time.monotonic()
        since = self._missing.setdefault(uid, now)
        if now - since < self.config.lost_after_seconds:
            return
        try:
            body = encoded([held], self.config.status_pods == "full")
            alone = [s for s in await self.edge.status(body) if s.UID == uid]
        except InterLinkError as exc:
            log.warning("status of pod %s alone failed (%s); it keeps its last state", uid, exc)
            return
        if alone:
            self._missing.pop(uid, None)
            await self._apply(held.pod(), alone[0])
            return
        why = (
            f"the edge has not reported job {held.job} of this pod for {now - since:.0f} s, "
            "not even when asked for it alone"
        )
        await self._fail(held.pod(), "ProviderLost", why)

    async def _apply(self, pod: JSON, answer: PodStatus) -> None:
        """Patch the pod's status if it changed; an Event on a phase transition, and the
        kubelet Events the edge recorded since the last answer."""
        for event in self._edge_events.new(str(pod["metadata"]["uid"]), answer.events):
            warning = event.get("type") == "Warning"
            reason, message = str(event.get("reason", "")), str(event.get("message", ""))
            await self.kube.event(pod, reason, message, self.node, warning=warning)
        new = kube_status(pod, answer)
        old = pod.get("status") or {}
        if _significant(new) == _significant(old):
            return
        self._remember(await self.kube.patch_pod(pod, {"status": new}, status=True))
        before, after = old.get("phase"), new["phase"]
        if before == after:
            return
        if after == "Running":
            await self.kube.event(pod, "Started", "containers started remotely", self.node)
        elif after == "Failed":
            shown = display_status(new)
            await self.kube.event(pod, "Failed", new.get("message", shown), self.node, warning=True)
        elif after == "Succeeded":
            await self.kube.event(pod, "Completed", "all containers completed", self.node)

    # --- delete -------------------------------------------------------------------------------

    async def _delete(self, held: Held) -> bool:
        """Delete remotely, then for good; False when the edge refused (retried)."""
        uid, pod = held.uid, held.pod()
        if held.job:
            try:
                async with self.metrics.edge_call("delete"):
                    await self.edge.delete(pod)
            except InterLinkError as exc:
                if not _unknown_at_edge(exc):
                    if uid not in self._pods:  # it left Kubernetes meanwhile: owed, not lost
                        self.owed.add(Owed.of(pod))
                        return True
                    if uid not in self._refused:  # one Event, not one per retry
                        await self.kube.event(
                            pod, "FailedKilling", str(exc), self.node, warning=True
                        )
                    self._backoff(uid)
                    return False
        await self.kube.delete_pod(pod, grace=0)
        self._pods.pop(uid, None)
        self._forget(uid)
        log.info("pod %s/%s deleted", held.namespace, held.name)
        return True

    async def _delete_owed(self, item: Owed) -> bool:
        """Send a delete the edge is owed; True once the edge took it (or did not know it)."""
        try:
            async with self.metrics.edge_call("delete"):
                await self.edge.delete(item.pod())
        except InterLinkError as exc:
            if not _unknown_at_edge(exc):
                if item.tries == 0:
                    log.warning(
                        "delete of gone pod %s/%s (job %s) at the edge failed (%s); retrying",
                        item.namespace,
                        item.name,
                        item.job,
                        exc,
                    )
                self.owed.failed(item, self.config.pending_status_interval_seconds)
                return False
        self.owed.done(item.uid)
        log.info("gone pod %s/%s deleted at the edge (job %s)", item.namespace, item.name, item.job)
        return True


class _Missing(Exception):
    """A ConfigMap or Secret the pod needs does not exist (yet)."""
