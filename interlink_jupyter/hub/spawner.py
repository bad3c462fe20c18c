"""``InterLinkSpawner``: KubeSpawner for notebook servers on interLink virtual nodes.

Five small additions, each needed by batch-backed nodes:

* **progress** shows the batch state next to the pod's Events (``Submitted (job 42)``,
  ``Queued: Priority (job 42)``, ``Running (job 42)``);
* **per-profile start timeout**: the hub reads ``start_timeout`` *before* ``start()`` applies
  the profile, so the chosen profile's value is applied first (``run_pre_spawn_hook``);
* **allow-listed choices**: a choice outside a profile option's ``choices`` is refused with a
  message naming the allowed values (on the form, and for REST API spawns);
* **handed over when listening**: the URL goes to the hub once the server's port accepts
  connections (the hub's own check backs off up to 5 s between tries);
* **no pod IP**: a plugin that reports none (upstream's SLURM plugin; ours reports the batch
  host's address) is reached at the profile's ``connect_host`` (trait
  ``interlink_connect_host``), e.g. a gateway in front of non-routable compute nodes.

On timeout or stop the hub calls :meth:`stop`, which deletes the pod; the virtual kubelet then
cancels the batch job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from traitlets import Float, Unicode

from .profiles import check_choices
from .progress import batch_state

JSON = dict[str, Any]
LISTEN_POLL_SECONDS = 0.1


class InterLinkSpawner(KubeSpawner):  # type: ignore[misc]
    """KubeSpawner with batch-queue awareness (see the module's docstring)."""

    interlink_connect_host = Unicode(
        "",
        config=True,
        help="Address of the server when the virtual kubelet reports no pod IP "
        "(e.g. the compute nodes' gateway); empty: wait for a pod IP.",
    )
    interlink_progress_interval = Float(
        0.5, config=True, help="Seconds between looks at the pod's batch state during a spawn."
    )

    # --- profile: timeout and allowed choices before the spawn starts -------------------------

    async def _profiles(self) -> list[JSON]:
        profiles = self._sorted_dict_values(self.profile_list)
        if callable(profiles):
            profiles = await maybe_future(profiles(self))
        return list(self._get_initialized_profile_list(profiles))

    async def _selected_profile(self, user_options: JSON) -> JSON | None:
        profiles = await self._profiles()
        if not profiles:
            return None
        profile: JSON = self._get_profile(user_options.get("profile"), profiles)
        return profile

    async def _checked_options(self, form_data: JSON) -> JSON:
        options: JSON = await maybe_future(super().run_options_from_form(form_data))
        profile = await self._selected_profile(options)
        if profile is not None:
            check_choices(profile, options)
        return options

    def run_options_from_form(self, form_data: JSON) -> Any:
        """The form's choices, refused (form shown again with the message) when not allowed."""
        return self._checked_options(form_data)

    async def run_pre_spawn_hook(self) -> Any:
        """Check the choices (REST API spawns skip the form) and apply the chosen profile's
        ``start_timeout`` before the hub starts its clock."""
        profile = await self._selected_profile(self.user_options or {})
        if profile is not None:
            check_choices(profile, self.user_options or {})
            timeout = (profile.get("kubespawner_override") or {}).get("start_timeout")
            if timeout:
                self.start_timeout = int(timeout)
        return await maybe_future(super().run_pre_spawn_hook())

    def start(self) -> asyncio.Future[Any]:
        """KubeSpawner's start, given up a second before the hub's own timeout, with a message
        that says what the batch job was doing (the hub's says nothing)."""
        return asyncio.ensure_future(self._within_start_timeout(super().start()))

    async def _within_start_timeout(self, started: asyncio.Future[Any]) -> Any:
        timeout = self.start_timeout
        try:
            return await asyncio.wait_for(self._listening(started), max(timeout - 1, 0.5))
        except TimeoutError:
            reflector = self.pod_reflector
            pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None
            state = (batch_state(pod) if pod else None) or "the pod was not scheduled"
            raise TimeoutError(
                f"the server did not start within {timeout} seconds ({state}); "
                "its pod and batch job are deleted"
            ) from None

    async def _listening(self, started: asyncio.Future[Any]) -> Any:
        """The server's URL once its port accepts connections. A batch job's server starts
        seconds after its container does; the hub's own check of a new server backs off up
        to 5 s between tries, so it is handed over only once it listens."""
        url = await started
        target = urlsplit(str(url))
        while True:
            try:
                _, writer = await asyncio.open_connection(target.hostname, target.port)
            except OSError:
                await asyncio.sleep(LISTEN_POLL_SECONDS)
                continue
            writer.close()
            return url

    # --- reaching a server whose pod has no IP -------------------------------------------------

    def _with_ip(self, pod: JSON) -> JSON:
        status = pod.get("status") or {}
        if status.get("podIP") or not self.interlink_connect_host:
            return pod
        return {**pod, "status": {**status, "podIP": self.interlink_connect_host}}

    def is_pod_running(self, pod: JSON | None) -> bool:
        """Running, ready, not being deleted, and an address to reach it at."""
        if pod is None:
            return False
        pod = self._with_ip(pod)
        status = pod.get("status") or {}
        return bool(
            status.get("phase") == "Running"
            and status.get("podIP")
            and "deletionTimestamp" not in pod["metadata"]
            and all(cs.get("ready") for cs in status.get("containerStatuses") or [{}])
        )

    def _get_pod_url(self, pod: JSON) -> str:
        return str(super()._get_pod_url(self._with_ip(pod)))

    # --- progress: pod Events and batch state -------------------------------------------------

    async def _batch_progress(self, queue: asyncio.Queue[JSON | None]) -> None:
        last = None
        while True:
            reflector = self.pod_reflector  # None until the spawn starts watching pods
            pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None
            message = batch_state(pod) if pod else None
            if message and message != last:
                await queue.put({"message": message})
                last = message
            future = self._start_future
            if future is not None and future.done():
                return
            await asyncio.sleep(self.interlink_progress_interval)

    async def _events_progress(self, queue: asyncio.Queue[JSON | None]) -> None:
        async for event in super().progress():
            await queue.put(event)

    async def progress(self) -> AsyncIterator[JSON]:
        """KubeSpawner's pod Events, merged with batch-state messages as they change."""
        queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        tasks = [
            asyncio.ensure_future(self._events_progress(queue)),
            asyncio.ensure_future(self._batch_progress(queue)),
        ]
        done = asyncio.ensure_future(self._close_when_done(tasks, queue, self.log))
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            for task in [*tasks, done]:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, done, return_exceptions=True)

    @staticmethod
    async def _close_when_done(
        tasks: Sequence[asyncio.Future[None]], queue: asyncio.Queue[JSON | None], log: Any
    ) -> None:
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("spawn progress failed: %r", result, exc_info=result)
        await queue.put(None)
