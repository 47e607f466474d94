"""The synchronous client, :class:`Client`, and its event stream."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Iterator

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
from .errors import ConnectionFailed, MissionBusError
from .types import (
    BatchResult,
    CheckpointsPage,
    ConsumerPosition,
    HandoffInfo,
    HandoffStep,
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

#: Stream errors worth reconnecting after (a limit reached, or the store closing).
STREAM_RETRY_CODES = ("too_many_streams", "unavailable")


class Client:
    """A connection to a mission-bus server as one token's owner.

    ``Client(url, token)``: ``token`` is the admin token or a participant's
    (``mb_...``). One keep-alive connection is reused; close it with
    :meth:`close` or use the client as a context manager.

    Every write carries an ``event_id`` (generated unless given), so a
    write is resent after a connection error or a 503 ``unavailable``
    (up to ``retries`` times) without ever being stored twice. Errors are
    raised as :class:`~mission_bus.errors.MissionBusError` subclasses.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 retries: int = 5, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, req: Req) -> Any:
        attempt = 0
        while True:
            try:
                resp = self._http.request(req.method, req.path, json=req.body,
                                          params=req.params, headers=req.headers)
            except TRANSPORT as e:
                safe = req.idempotent or isinstance(e, NOT_SENT)
                if not safe or attempt >= self.retries:
                    raise ConnectionFailed(f"{req.method} {req.path}: {e!r}") from e
            else:
                if resp.is_success:
                    return req.parse(resp.json() if resp.content else None)
                err = error_of(resp)
                if not (retriable_status(err) and attempt < self.retries):
                    raise err
            attempt += 1
            time.sleep(retry_delay(attempt))

    # -- endpoints -------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``: ``{status, version}``."""
        return self._call(R.health())

    def create_mission(self, mission_id: str, title: str, lead: str, *,
                       profiles: dict[str, Any] | None = None) -> MissionCreated:
        """Create a mission with its lead (admin token)."""
        return self._call(R.create_mission(mission_id, title, lead, profiles))

    def add_participant(self, mission_id: str, name: str, role: str, *,
                        metadata: dict[str, Any] | None = None) -> ParticipantAdded:
        """Add a participant (admin or lead); the answer holds its token."""
        return self._call(R.add_participant(mission_id, name, role, metadata))

    def reissue_token(self, mission_id: str, name: str, *,
                            rotate: bool = True) -> TokenIssued:
        """A new token for ``name`` (admin or a lead); every earlier one stops
        working, unless ``rotate=False`` (an additional token)."""
        return self._call(R.reissue_token(mission_id, name, rotate))

    def publish(self, mission_id: str, topic: str, payload: Any = None, *,
                expected_sequence: int | None = None,
                event_id: str | None = None) -> Event:
        """Publish a message; returns the stored event."""
        return self._call(R.publish(mission_id, topic, payload, expected_sequence, event_id))

    def checkpoint(self, mission_id: str, summary: str, state: Any = None, *,
                   artifacts: Iterable[str] | None = None,
                   expected_sequence: int | None = None,
                   event_id: str | None = None) -> Event:
        """Record a checkpoint; ``event.id`` is its checkpoint id."""
        return self._call(R.checkpoint(mission_id, summary, state, artifacts,
                                       expected_sequence, event_id))

    def handoff(self, mission_id: str, recipient: str, checkpoint_id: str, *,
                note: str | None = None, expected_sequence: int | None = None,
                event_id: str | None = None) -> Event:
        """Hand a checkpoint off to ``recipient``."""
        return self._call(R.handoff(mission_id, recipient, checkpoint_id, note,
                                    expected_sequence, event_id))

    def batch(self, mission_id: str, items: Iterable[dict[str, Any]], *,
              expected_sequence: int | None = None) -> BatchResult:
        """Write 1 to 1000 events atomically (see :func:`message_item`,
        :func:`checkpoint_item`, :func:`handoff_item`). Resent only when it
        surely was not written; pass ``expected_sequence`` to make your own
        resend safe."""
        return self._call(R.batch(mission_id, items, expected_sequence))

    def events(self, mission_id: str, from_: int | None = 1, limit: int | None = 100, *,
               types: Iterable[str] | str | None = None, sender: str | None = None,
               recipient: str | None = None, topic_prefix: str | None = None,
               to: int | None = None, order: str | None = None,
               consumer: str | None = None) -> EventsPage:
        """One page of the log from sequence ``from_``, filtered in the store:
        ``types`` (event types), ``sender``, ``recipient`` (handoffs),
        ``topic_prefix`` (messages), ``to`` (inclusive), ``order="desc"``
        (newest first: with ``limit``, the last N), ``consumer`` (start
        after what the caller's consumer acknowledged)."""
        return self._call(R.events(mission_id, from_, limit, types=types, sender=sender,
                                   recipient=recipient, topic_prefix=topic_prefix, to=to,
                                   order=order, consumer=consumer))

    def iter_events(self, mission_id: str, from_: int = 1,
                    page_size: int = 1000) -> Iterator[Event]:
        """Every event from ``from_`` up to the head, page by page."""
        while True:
            page = self.events(mission_id, from_, page_size)
            if not page.events:
                return
            yield from page.events
            from_ = page.next

    def resume(self, mission_id: str, for_: str | None = None) -> ResumePacket:
        """The resume packet of the latest handoff to ``for_`` (default: the
        caller; required with the admin token)."""
        return self._call(R.resume(mission_id, for_))

    def resume_handoff(self, mission_id: str, handoff_id: str) -> ResumePacket:
        """The resume packet of one handoff."""
        return self._call(R.resume_handoff(mission_id, handoff_id))

    def list_missions(self) -> MissionList:
        """``GET /v1/missions``: every mission (admin), or the caller's own."""
        return self._call(R.list_missions())

    def mission(self, mission_id: str) -> MissionSummary:
        """``GET /v1/missions/{m}``: one mission's summary (admin, or ``read``)."""
        return self._call(R.mission(mission_id))

    def event(self, mission_id: str, sequence: int) -> EventRecord:
        """``GET .../events/{seq}``: one event with its chain hashes."""
        return self._call(R.event(mission_id, sequence))

    def backup(self, to: str) -> dict[str, Any]:
        """``POST /v1/admin/backup`` (admin): a consistent copy of the whole
        store into ``to``, an absolute path, absent or an empty directory."""
        return self._call(R.backup(to))

    def verify(self, mission_id: str) -> VerifyReport:
        """Check the mission's hash chain (admin or ``audit``)."""
        return self._call(R.verify(mission_id))

    # -- handoff lifecycle ---------------------------------------------------

    def accept(self, mission_id: str, handoff_id: str, *,
               lease_ms: int | None = None) -> HandoffStep:
        """Accept a handoff addressed to the caller: it holds a lease of
        ``lease_ms`` (default 60 s, at most 24 h) until it lapses; keep it
        with :meth:`heartbeat`."""
        return self._call(R.handoff_step(mission_id, handoff_id, "accept", lease_ms=lease_ms))

    def heartbeat(self, mission_id: str, handoff_id: str, *,
                  lease_ms: int | None = None) -> HandoffStep:
        """Extend the lease of a handoff the caller holds: it now ends
        ``lease_ms`` from now (:class:`~mission_bus.errors.LifecycleConflict`
        once it lapsed)."""
        return self._call(R.handoff_step(mission_id, handoff_id, "heartbeat",
                                         lease_ms=lease_ms))

    def complete(self, mission_id: str, handoff_id: str, *,
                 note: str | None = None) -> HandoffStep:
        """Finish a handoff the caller holds."""
        return self._call(R.handoff_step(mission_id, handoff_id, "complete", note=note))

    def decline(self, mission_id: str, handoff_id: str, *,
                note: str | None = None) -> HandoffStep:
        """Refuse a handoff offered to the caller; the work returns to its sender."""
        return self._call(R.handoff_step(mission_id, handoff_id, "decline", note=note))

    def release(self, mission_id: str, handoff_id: str, *,
                note: str | None = None) -> HandoffStep:
        """Give back a handoff the caller holds; the work returns to its sender."""
        return self._call(R.handoff_step(mission_id, handoff_id, "release", note=note))

    def handoffs(self, mission_id: str, recipient: str | None = None) -> list[HandoffInfo]:
        """Handoffs addressed to ``recipient`` (default: the caller; with the
        admin token, everyone's), open ones first, with their status."""
        return self._call(R.handoffs(mission_id, recipient))

    def handoff_info(self, mission_id: str, handoff_id: str) -> HandoffInfo:
        """One handoff's lifecycle record."""
        return self._call(R.handoff_info(mission_id, handoff_id))

    # -- checkpoints -----------------------------------------------------------

    def checkpoints(self, mission_id: str, *, sender: str | None = None,
                    before: int | None = None, limit: int | None = None) -> CheckpointsPage:
        """Checkpoints newest first (of ``sender``, or anyone's); page with
        ``before=page.next_before``."""
        return self._call(R.checkpoints(mission_id, sender, before, limit))

    def get_checkpoint(self, mission_id: str, checkpoint_id: str) -> Event:
        """The checkpoint event with this id
        (:class:`~mission_bus.errors.CheckpointNotFound` otherwise)."""
        return self._call(R.get_checkpoint(mission_id, checkpoint_id))

    def latest_checkpoint(self, mission_id: str, sender: str | None = None) -> Event:
        """``sender``'s latest checkpoint (default: the caller's; required
        with the admin token)."""
        return self._call(R.latest_checkpoint(mission_id, sender))

    # -- membership and tokens -------------------------------------------------

    def change_role(self, mission_id: str, name: str, role: str) -> Event:
        """Change ``name``'s role (admin or a lead); the ``role_changed`` event."""
        return self._call(R.change_role(mission_id, name, role))

    def remove_participant(self, mission_id: str, name: str) -> Event:
        """Remove ``name`` (admin or a lead, not itself): its tokens stop
        working at once; the ``participant_removed`` event."""
        return self._call(R.remove_participant(mission_id, name))

    def rotate_token(self, mission_id: str) -> TokenIssued:
        """A new token for the caller (a participant); every earlier one,
        this client's included, stops working: use the new one."""
        return self._call(R.rotate_own_token(mission_id))

    # -- consumer positions ----------------------------------------------------

    def ack(self, mission_id: str, consumer: str, sequence: int) -> ConsumerPosition:
        """Acknowledge up to ``sequence`` for the caller's ``consumer``
        (created on first use; never moves back). Reads and streams given
        ``consumer=`` start after it, in any process."""
        return self._call(R.ack(mission_id, consumer, sequence))

    def consumers(self, mission_id: str) -> list[ConsumerPosition]:
        """Consumer positions: the caller's own; everyone's for the admin, a
        lead or an auditor."""
        return self._call(R.consumers(mission_id))

    def delete_consumer(self, mission_id: str, consumer: str) -> None:
        """Forget one of the caller's consumers."""
        return self._call(R.delete_consumer(mission_id, consumer))

    def expire_leases(self, mission_id: str | None = None, *,
                      at: str | None = None) -> list[Event]:
        """Admin: expire every lease that lapsed by ``at`` (RFC 3339, default
        now) in one mission or all; the expiry events. (The server also does
        this every second.)"""
        return self._call(R.expire_leases(mission_id, at))

    def stream(self, mission_id: str, *, after: int = 0,
               reconnect_timeout: float = 30.0, types: Iterable[str] | str | None = None,
               sender: str | None = None, recipient: str | None = None,
               topic_prefix: str | None = None) -> "EventStream":
        """Follow the mission live from sequence ``after + 1``, only the
        events that pass the filters (as :meth:`events`, filtered in the
        store, still exactly once); see :class:`EventStream`."""
        params = R.filter_params(types=types, sender=sender, recipient=recipient,
                                 topic_prefix=topic_prefix)
        return EventStream(self, mission_id, after, reconnect_timeout, params)


class EventStream:
    """An iterator over a mission's events, live.

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

    def __init__(self, client: Client, mission_id: str, after: int,
                 reconnect_timeout: float, params: Any = None) -> None:
        self.client = client
        self.mission_id = mission_id
        #: The filter's query parameters, sent on every (re)connection.
        self.params = params or None
        #: The sequence of the last event yielded.
        self.last_sequence = after
        self.reconnect_timeout = reconnect_timeout
        #: How many times the stream was reopened after the first connection.
        self.reconnects = 0

    def __iter__(self) -> Iterator[Event]:
        path = R.m(self.mission_id, "/events/stream")
        failing_since: float | None = None
        attempt = 0
        first = True
        while True:
            if not first:
                self.reconnects += 1
            first = False
            try:
                with self.client._http.stream(
                        "GET", path, headers=stream_headers(self.last_sequence),
                        params=self.params,
                        timeout=httpx.Timeout(30.0, read=60.0)) as resp:
                    if not resp.is_success:
                        resp.read()
                        err = error_of(resp)
                        if err.code not in STREAM_RETRY_CODES:
                            raise err
                        raise _Reconnect(err)
                    failing_since, attempt = None, 0
                    parser = SseParser()
                    for line in resp.iter_lines():
                        got = parser.feed(line)
                        if got is None:
                            continue
                        event = Event.from_json(json.loads(got[1]))
                        if event.sequence <= self.last_sequence:
                            continue
                        self.last_sequence = event.sequence
                        yield event
                # The server ended the stream (shutdown, cut off): reconnect.
                time.sleep(retry_delay(1))
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
                time.sleep(retry_delay(attempt))


class _Reconnect(Exception):
    def __init__(self, err: MissionBusError) -> None:
        super().__init__(str(err))
        self.err = err
