"""The asyncio client, :class:`AsyncClient`, and its event stream."""

from __future__ import annotations

import json
import asyncio
import time
from typing import Any, AsyncIterator, Iterable

import httpx

from . import _requests as R
from ._common import (
    NOT_SENT,
    TRANSPORT,
    Req,
    SseParser,
    error_of,
    retriable_status,
    retry_delay,
    stream_headers,
)
from .client import STREAM_RETRY_CODES, _Reconnect
from .errors import ConnectionFailed
from .types import (
    BatchResult,
    Event,
    EventRecord,
    EventsPage,
    MissionList,
    MissionSummary,
    MissionCreated,
    ParticipantAdded,
    ResumePacket,
    TokenIssued,
    VerifyReport,
)

class AsyncClient:
    """The asyncio twin of :class:`~mission_bus.Client`: the same methods,
    awaited; :meth:`stream` is an async iterator.

    A connection to a mission-bus server as one token's owner.

    ``Client(url, token)``: ``token`` is the admin token or a participant's
    (``mb_...``). One keep-alive connection is reused; close it with
    :meth:`close` or use the client as a context manager.

    Every write carries an ``event_id`` (generated unless given), so a
    write is resent after a connection error or a 503 ``unavailable``
    (up to ``retries`` times) without ever being stored twice. Errors are
    raised as :class:`~mission_bus.errors.MissionBusError` subclasses.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 retries: int = 5, transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout,
                                  transport=transport)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, req: Req) -> Any:
        attempt = 0
        while True:
            try:
                resp = await self._http.request(req.method, req.path, json=req.body,
                                          params=req.params, headers=req.headers)
            except TRANSPORT as e:
                safe = req.idempotent or isinstance(e, NOT_SENT)
                if not safe or attempt >= self.retries:
                    raise ConnectionFailed(f"{req.method} {req.path}: {e!r}") from e
            else:
                if resp.is_success:
                    return req.parse(resp.json())
                err = error_of(resp)
                if not (retriable_status(err) and attempt < self.retries):
                    raise err
            attempt += 1
            await asyncio.sleep(retry_delay(attempt))

    # -- endpoints -------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /v1/health``: ``{status, version}``."""
        return await self._call(R.health())

    async def create_mission(self, mission_id: str, title: str, lead: str, *,
                       profiles: dict[str, Any] | None = None) -> MissionCreated:
        """Create a mission with its lead (admin token)."""
        return await self._call(R.create_mission(mission_id, title, lead, profiles))

    async def add_participant(self, mission_id: str, name: str, role: str, *,
                        metadata: dict[str, Any] | None = None) -> ParticipantAdded:
        """Add a participant (admin or lead); the answer holds its token."""
        return await self._call(R.add_participant(mission_id, name, role, metadata))

    async def reissue_token(self, mission_id: str, name: str) -> TokenIssued:
        """A new token for ``name``; every earlier one stops working."""
        return await self._call(R.reissue_token(mission_id, name))

    async def publish(self, mission_id: str, topic: str, payload: Any = None, *,
                expected_sequence: int | None = None,
                event_id: str | None = None) -> Event:
        """Publish a message; returns the stored event."""
        return await self._call(R.publish(mission_id, topic, payload, expected_sequence, event_id))

    async def checkpoint(self, mission_id: str, summary: str, state: Any = None, *,
                   artifacts: Iterable[str] | None = None,
                   expected_sequence: int | None = None,
                   event_id: str | None = None) -> Event:
        """Record a checkpoint; ``event.id`` is its checkpoint id."""
        return await self._call(R.checkpoint(mission_id, summary, state, artifacts,
                                       expected_sequence, event_id))

    async def handoff(self, mission_id: str, recipient: str, checkpoint_id: str, *,
                note: str | None = None, expected_sequence: int | None = None,
                event_id: str | None = None) -> Event:
        """Hand a checkpoint off to ``recipient``."""
        return await self._call(R.handoff(mission_id, recipient, checkpoint_id, note,
                                    expected_sequence, event_id))

    async def batch(self, mission_id: str, items: Iterable[dict[str, Any]], *,
              expected_sequence: int | None = None) -> BatchResult:
        """Write 1 to 1000 events atomically (see :func:`message_item`,
        :func:`checkpoint_item`, :func:`handoff_item`). Resent only when it
        surely was not written; pass ``expected_sequence`` to make your own
        resend safe."""
        return await self._call(R.batch(mission_id, items, expected_sequence))

    async def events(self, mission_id: str, from_: int = 1, limit: int = 100) -> EventsPage:
        """One page of the log from sequence ``from_``."""
        return await self._call(R.events(mission_id, from_, limit))

    async def iter_events(self, mission_id: str, from_: int = 1,
                          page_size: int = 1000) -> AsyncIterator[Event]:
        """Every event from ``from_`` up to the head, page by page."""
        while True:
            page = await self.events(mission_id, from_, page_size)
            if not page.events:
                return
            for e in page.events:
                yield e
            from_ = page.next

    async def resume(self, mission_id: str, for_: str | None = None) -> ResumePacket:
        """The resume packet of the latest handoff to ``for_`` (default: the
        caller; required with the admin token)."""
        return await self._call(R.resume(mission_id, for_))

    async def resume_handoff(self, mission_id: str, handoff_id: str) -> ResumePacket:
        """The resume packet of one handoff."""
        return await self._call(R.resume_handoff(mission_id, handoff_id))

    async def list_missions(self) -> MissionList:
        """``GET /v1/missions``: every mission (admin), or the caller's own."""
        return await self._call(R.list_missions())

    async def mission(self, mission_id: str) -> MissionSummary:
        """``GET /v1/missions/{m}``: one mission's summary (admin, or ``read``)."""
        return await self._call(R.mission(mission_id))

    async def event(self, mission_id: str, sequence: int) -> EventRecord:
        """``GET .../events/{seq}``: one event with its chain hashes."""
        return await self._call(R.event(mission_id, sequence))

    async def backup(self, to: str) -> dict[str, Any]:
        """``POST /v1/admin/backup`` (admin): a consistent copy of the whole
        store into ``to``, an absolute path, absent or an empty directory."""
        return await self._call(R.backup(to))

    async def verify(self, mission_id: str) -> VerifyReport:
        """Check the mission's hash chain (admin or ``audit``)."""
        return await self._call(R.verify(mission_id))

    def stream(self, mission_id: str, *, after: int = 0,
               reconnect_timeout: float = 30.0) -> "AsyncEventStream":
        """Follow the mission live from sequence ``after + 1``; see
        :class:`EventStream`."""
        return AsyncEventStream(self, mission_id, after, reconnect_timeout)


class AsyncEventStream:
    """An async iterator over a mission's events, live (``async for``).

    It yields each event once, in sequence order. When the connection
    drops or the server ends the stream (shutdown, restart, a stalled
    reader cut off), it reconnects with ``Last-Event-ID`` set to
    :attr:`last_sequence` and goes on; events at or below it are never
    yielded again. It gives up, raising
    :class:`~mission_bus.errors.ConnectionFailed`, when no connection
    succeeds for ``reconnect_timeout`` seconds; errors such as 401, 403 or
    404 are raised at once. Persist :attr:`last_sequence` and pass it as
    ``after`` to continue in another process.
    """

    def __init__(self, client: AsyncClient, mission_id: str, after: int,
                 reconnect_timeout: float) -> None:
        self.client = client
        self.mission_id = mission_id
        #: The sequence of the last event yielded.
        self.last_sequence = after
        self.reconnect_timeout = reconnect_timeout
        #: How many times the stream was reopened after the first connection.
        self.reconnects = 0

    async def __aiter__(self) -> AsyncIterator[Event]:
        path = R.m(self.mission_id, "/events/stream")
        failing_since: float | None = None
        attempt = 0
        first = True
        while True:
            if not first:
                self.reconnects += 1
            first = False
            try:
                async with self.client._http.stream(
                        "GET", path, headers=stream_headers(self.last_sequence),
                        timeout=httpx.Timeout(30.0, read=60.0)) as resp:
                    if not resp.is_success:
                        await resp.aread()
                        err = error_of(resp)
                        if err.code not in STREAM_RETRY_CODES:
                            raise err
                        raise _Reconnect(err)
                    failing_since, attempt = None, 0
                    parser = SseParser()
                    async for line in resp.aiter_lines():
                        got = parser.feed(line)
                        if got is None:
                            continue
                        event = Event.from_json(json.loads(got[1]))
                        if event.sequence <= self.last_sequence:
                            continue
                        self.last_sequence = event.sequence
                        yield event
                # The server ended the stream (shutdown, cut off): reconnect.
                await asyncio.sleep(retry_delay(1))
                continue
            except (httpx.TransportError, _Reconnect) as e:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.reconnect_timeout:
                    raise ConnectionFailed(
                        f"stream of mission '{self.mission_id}' after sequence "
                        f"{self.last_sequence}: no connection for "
                        f"{self.reconnect_timeout} s: {e!r}") from e
                attempt += 1
                await asyncio.sleep(retry_delay(attempt))

