"""The FHIR Subscription delivery loop, run in the worker process beside the Temporal worker.

Each pass, per live subscription (under a lease in the event store, so two workers never send
for the same one): a `requested` subscription gets its handshake (2xx: `active`, else `error`);
an `active` one has its new matching Task versions numbered, then its undelivered events sent in
number order, one notification each, stopping at the first failure and retrying it with
exponential backoff; with nothing to send, a heartbeat when its period has passed. All of it is
kept in the event store, so a restarted worker carries on where the last one stopped. A stop
lets the notification in flight finish and sends no further one. Notifications carry the
subscriber's channel headers and a Standard Webhooks signature (webhook-id is stable per event).
Logs name subscriptions, providers and status classes only: never a Task's content.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpcore
import httpx
import structlog

from activities.notify import sign
from activities.subscriptions import LOOKBACK, Record, SubscriptionStore
from pathways.settings import Settings
from pathways.subscriptions import (
    Content,
    Event,
    Status,
    as_seen,
    backoff_seconds,
    header_pairs,
    notification_bundle,
    status_parameters,
)
from pathways.webhook_url import (
    DOES_NOT_RESOLVE,
    EndpointRefused,
    Resolver,
    public_addresses,
    system_resolver,
    webhook_url_problem,
)

log = structlog.get_logger("pathways.subscriptions")


@dataclass(frozen=True)
class Timing:
    """How often the loop looks, how it backs off, how many events a pass sends at most."""

    poll_seconds: float = 1.0
    first_backoff_seconds: float = 2.0
    max_backoff_seconds: float = 300.0
    lease: timedelta = timedelta(seconds=120)
    batch: int = 50
    concurrency: int = 20
    lookback: timedelta = LOOKBACK
    prune_seconds: float = 60.0
    handshake_waits: tuple[float, ...] = (15.0, 45.0)
    """Waits before the 2nd, 3rd... handshake attempt: 3 attempts over a minute, then `error`."""


REFUSED = "endpoint refused: "
"""How a delivery the address policy refused begins: never retried, the subscription goes to
`error` (PUT it again, with a public endpoint, to retry)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class PublicOnly(httpcore.AsyncNetworkBackend):
    """Connects only to public addresses (`PATHWAYS_SUBSCRIPTION_ENDPOINTS=public`): the host is
    resolved here, every address checked, and the TCP connection made to a checked address, so
    a name re-resolving to an internal address between check and connect (DNS rebinding) gains
    nothing. TLS is unchanged: httpcore starts it with the URL's host name as SNI and for the
    certificate check, and the Host header is the URL's, whatever address was dialled."""

    def __init__(self, resolve: Resolver = system_resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.resolve = resolve
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None, socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(
                asyncio.to_thread(public_addresses, host, port, self.resolve), timeout or 10.0
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(DOES_NOT_RESOLVE) from None
        except OSError:
            raise httpcore.ConnectError(DOES_NOT_RESOLVE) from None
        last: Exception = httpcore.ConnectError(DOES_NOT_RESOLVE)
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise EndpointRefused("unix sockets are not endpoints")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, dialling through `PublicOnly` (no proxy: a proxy would resolve)."""

    def __init__(
        self,
        resolve: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            network_backend=PublicOnly(resolve, inner),
        )


def endpoint_client(settings: Settings, resolve: Resolver = system_resolver) -> httpx.AsyncClient:
    """The HTTP client deliveries go out on: under `public`, only to public addresses and never
    through a proxy from the environment; under `any`, a plain client. Redirects are never
    followed (a 3xx is a failed delivery)."""
    if settings.subscription_endpoints == "public":
        return httpx.AsyncClient(transport=PublicOnlyTransport(resolve), trust_env=False,
                                 follow_redirects=False)
    return httpx.AsyncClient(follow_redirects=False)


class Delivery:
    """Sends every subscription's notifications; `run` until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        store: SubscriptionStore,
        http: httpx.AsyncClient,
        timing: Timing = Timing(),
    ) -> None:
        self.settings = settings
        self.store = store
        self.http = http
        self.timing = timing
        self.worker_id = f"w-{secrets.token_hex(6)}"
        self.stop = asyncio.Event()
        self.held: dict[str, datetime] = {}
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.slots = asyncio.Semaphore(timing.concurrency)
        self.pruned_at = float("-inf")

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Pass after pass until stopped; a failing pass is logged and the next one tries again.
        On stop, notifications in flight finish and the leases are given back."""
        if stop is not None:
            self.stop = stop
        try:
            await asyncio.to_thread(self.store.migrate)
        except Exception as error:  # another process may be creating them: passes retry
            log.warning("subscription tables not migrated", error=type(error).__name__)
        while not self.stop.is_set():
            try:
                await self.tick()
            except Exception as error:  # the loop must outlive a database blip
                log.warning("subscription pass failed", error=type(error).__name__)
            try:
                await asyncio.wait_for(self.stop.wait(), self.timing.poll_seconds)
            except TimeoutError:
                pass
        await asyncio.gather(*self.inflight.values(), return_exceptions=True)
        await asyncio.to_thread(self.store.release_all, self.worker_id)

    async def tick(self) -> None:
        """Start a step for every live subscription that is not already being served: each goes
        at its own pace, so a slow endpoint holds up only its own subscription. Now and then,
        first drop the recorded-batch rows no subscription can look at again."""
        if time.monotonic() - self.pruned_at >= self.timing.prune_seconds:
            self.pruned_at = time.monotonic()
            try:
                await asyncio.to_thread(self.store.prune, self.timing.lookback)
            except Exception as error:  # pruning can wait for the next time
                log.warning("recorded batches not pruned", error=type(error).__name__)
        due = await asyncio.to_thread(self.store.due, utcnow(), self.worker_id)
        for record_id in due:
            if record_id not in self.inflight:
                task = asyncio.ensure_future(self._one(record_id))
                self.inflight[record_id] = task
                task.add_done_callback(functools.partial(self._done, record_id))

    def _done(self, record_id: str, task: asyncio.Task[None]) -> None:
        self.inflight.pop(record_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("subscription step failed", subscription=record_id,
                        error=type(error).__name__, where=_where(error))

    async def _one(self, record_id: str) -> None:
        async with self.slots:
            if self.stop.is_set():
                return
            record = await self._lease(record_id)
            if record is not None:
                await self.step(record)

    async def _lease(self, record_id: str) -> Record | None:
        """The subscription if this worker holds (or now takes) its lease; a lease with more
        than half its time left is not written again, so an idle pass costs reads only."""
        now = utcnow()
        expiry = self.held.get(record_id)
        if expiry is not None and expiry - now > self.timing.lease / 2:
            record = await asyncio.to_thread(self.store.current, record_id)
            if record is not None and record.status in (Status.REQUESTED, Status.ACTIVE):
                return record
            self.held.pop(record_id, None)
            return None
        record = await asyncio.to_thread(
            self.store.claim, record_id, self.worker_id, now, self.timing.lease
        )
        if record is None:
            self.held.pop(record_id, None)
            return None
        self.held[record_id] = now + self.timing.lease
        return record

    async def step(self, record: Record) -> None:
        now = utcnow()
        if record.spec.end is not None and now >= record.spec.end:
            await asyncio.to_thread(self.store.set_status, record.id, Status.OFF, now)
            log.info("subscription ended", subscription=record.id)
            return
        if record.status is Status.REQUESTED:
            if record.next_attempt_at is None or now >= record.next_attempt_at:
                await self._handshake(record)
            return
        await asyncio.to_thread(self.store.discover, record.id, self.timing.lookback)
        current = await asyncio.to_thread(self.store.current, record.id)
        if current is None or current.status is not Status.ACTIVE:
            return
        if current.next_attempt_at is not None and now < current.next_attempt_at:
            return
        if current.delivered_through < current.events_count:
            await self._deliver(current)
        elif self._heartbeat_due(current, now):
            await self._heartbeat(current)

    async def _handshake(self, record: Record) -> None:
        """Active on a 2xx; else tried again after each of `handshake_waits`, then `error`
        (at once when the address policy refuses the endpoint: retrying cannot help)."""
        parameters = self._status(record, Status.REQUESTED, "handshake")
        error = await self._post(record, parameters, [], f"{record.id}.handshake")
        now = utcnow()
        if error is None:
            await asyncio.to_thread(self.store.set_status, record.id, Status.ACTIVE, now)
            log.info("subscription active", subscription=record.id,
                     provider=record.spec.provider_id)
            return
        attempts = record.attempts + 1
        waits = self.timing.handshake_waits
        if error.startswith(REFUSED) or attempts > len(waits):
            await asyncio.to_thread(
                self.store.set_status, record.id, Status.ERROR, now,
                f"handshake failed after {attempts} attempt{'s' * (attempts > 1)}: {error}",
            )
        else:
            retry_at = now + timedelta(seconds=waits[attempts - 1])
            await asyncio.to_thread(
                self.store.failed, record.id, attempts, retry_at,
                f"handshake attempt {attempts} of {len(waits) + 1} failed: {error}",
            )
        log.warning("subscription handshake failed", subscription=record.id,
                    provider=record.spec.provider_id, attempts=attempts, error=error)

    async def _deliver(self, record: Record) -> None:
        """Undelivered events in order, one notification each, until one fails or we stop."""
        low = record.delivered_through + 1
        events = await asyncio.to_thread(
            self.store.events, record.id, low, low + self.timing.batch - 1
        )
        for event in events:
            if self.stop.is_set() or await self._lease(record.id) is None:
                return  # stopping, or the lease is lost: the next holder sends it
            error = await self._send_event(record, event)
            now = utcnow()
            if error is not None and error.startswith(REFUSED):
                await self._refused(record, error)
                return
            if error is not None:
                attempts = record.attempts + 1
                wait = backoff_seconds(
                    attempts, self.timing.first_backoff_seconds, self.timing.max_backoff_seconds
                )
                retry_at = now + timedelta(seconds=wait)
                await asyncio.to_thread(self.store.failed, record.id, attempts, retry_at, error)
                log.warning("subscription notification failed", subscription=record.id,
                            event_number=event.number, attempts=attempts, error=error)
                return
            await asyncio.to_thread(self.store.delivered, record.id, event.number, now)

    async def _send_event(self, record: Record, event: Event) -> str | None:
        tasks = []
        if record.spec.content is Content.FULL_RESOURCE:
            task = await asyncio.to_thread(self.store.task_at, event.task_id, event.version)
            if task is not None:
                tasks.append((event, as_seen(task, record.spec.provider_id, event.withdrawn)))
        parameters = self._status(record, Status.ACTIVE, "event-notification", [event])
        return await self._post(record, parameters, tasks, f"{record.id}.event.{event.number}")

    def _heartbeat_due(self, record: Record, now: datetime) -> bool:
        period = record.spec.heartbeat_seconds
        if period is None:
            return False
        last = record.last_sent_at or record.updated_at
        return now - last >= timedelta(seconds=period)

    async def _heartbeat(self, record: Record) -> None:
        parameters = self._status(record, Status.ACTIVE, "heartbeat")
        msg_id = f"{record.id}.heartbeat.{time.time_ns()}"
        error = await self._post(record, parameters, [], msg_id)
        if error is not None and error.startswith(REFUSED):
            await self._refused(record, error)
            return
        await asyncio.to_thread(self.store.heartbeat, record.id, utcnow(), error)

    async def _refused(self, record: Record, error: str) -> None:
        """The endpoint now fails the address policy: `error`, no retries (a PUT resumes)."""
        await asyncio.to_thread(self.store.set_status, record.id, Status.ERROR, utcnow(), error)
        log.warning("subscription endpoint refused", subscription=record.id,
                    provider=record.spec.provider_id, error=error)

    def _status(
        self, record: Record, status: Status, kind: str, events: list[Event] | None = None
    ) -> dict[str, Any]:
        return status_parameters(
            str(uuid.uuid4()), record.id, self.settings.base_url, status, kind,
            record.events_count, events or [], record.spec.content,
        )

    async def _post(
        self,
        record: Record,
        parameters: dict[str, Any],
        tasks: list[tuple[Event, dict[str, Any]]],
        msg_id: str,
    ) -> str | None:
        """POST one notification Bundle; None on a 2xx, else why not (no body, no content)."""
        spec = record.spec
        if problem := webhook_url_problem(spec.endpoint):
            return REFUSED + problem
        bundle = notification_bundle(
            str(uuid.uuid4()), parameters, record.id, self.settings.base_url, utcnow(), tasks
        )
        body = json.dumps(bundle, separators=(",", ":")).encode()
        stamp = int(time.time())
        headers = dict(header_pairs(spec.headers))
        headers |= {
            "Content-Type": spec.payload_type,
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
        }
        signing = self.settings.webhook_secrets(spec.provider_id)
        if signing:
            headers["webhook-signature"] = sign(msg_id, stamp, body, signing)
        try:
            response = await self.http.post(
                spec.endpoint, content=body, headers=headers,
                timeout=httpx.Timeout(float(spec.timeout_seconds), connect=3.0),
                follow_redirects=False,
            )
        except EndpointRefused as refused:
            return f"{REFUSED}{refused}"
        except httpx.TransportError as error:
            if str(error) == DOES_NOT_RESOLVE:
                return DOES_NOT_RESOLVE
            return f"endpoint unreachable ({type(error).__name__})"
        if 200 <= response.status_code < 300:
            return None
        return f"endpoint answered {response.status_code}"


async def deliver_forever(settings: Settings, stop: asyncio.Event) -> None:
    """The worker process's delivery loop, on its own store and HTTP client, until `stop`."""
    store = SubscriptionStore(settings.event_store)
    try:
        async with endpoint_client(settings) as http:
            await Delivery(settings, store, http).run(stop)
    finally:
        store.close()


def _where(error: BaseException) -> str:
    """file:line of the innermost frame: enough to find a bug, no values."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return "" if trace is None else f"{trace.tb_frame.f_code.co_filename}:{trace.tb_lineno}"
