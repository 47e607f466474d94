"""What the sync and async clients share: request building, the retry
policy, the server-sent-events parser. No I/O here."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import quote

import httpx

from .errors import MissionBusError, error_from_body

#: Exceptions meaning the request never reached the server: always safe to retry.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Any transport failure: safe to retry only for idempotent requests.
TRANSPORT = (httpx.TransportError,)


def seg(s: str) -> str:
    """One URL path segment, percent-encoded."""
    return quote(str(s), safe="")


def new_event_id() -> str:
    """A fresh event id (UUID v4) for a write: the server stores the event
    once however often the same write is retried with it."""
    return str(uuid.uuid4())


@dataclass
class Req:
    """One API call: how to send it, whether it may be resent, how to read
    its answer."""

    method: str
    path: str
    parse: Callable[[Any], Any]
    body: Any = None
    params: Any = None
    idempotent: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def write_body(fields: dict[str, Any], expected_sequence: int | None,
               event_id: str | None) -> dict[str, Any]:
    """A write's body with ``event_id`` (generated when not given) and the
    optional ``expected_sequence``; ``None`` fields are left out."""
    body = {k: v for k, v in fields.items() if v is not None}
    if expected_sequence is not None:
        body["expected_sequence"] = expected_sequence
    body["event_id"] = event_id or new_event_id()
    return body


def retry_delay(attempt: int) -> float:
    """Back-off before attempt ``attempt`` (1-based retries): 50 ms doubling,
    at most 2 s."""
    return min(2.0, 0.05 * (2 ** (attempt - 1)))


def error_of(resp: httpx.Response) -> MissionBusError:
    """The exception for a non-2xx response (its body already read)."""
    try:
        body = resp.json()
    except (ValueError, json.JSONDecodeError):
        body = resp.text
    return error_from_body(resp.status_code, body)


def retriable_status(err: MissionBusError) -> bool:
    """503 ``unavailable`` (the store is closing, nothing was written)."""
    return err.status == 503 and err.code == "unavailable"


class SseParser:
    """Feeds on text lines of a ``text/event-stream``; returns
    ``(id, data)`` for each complete event (comments are dropped)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str | None, str] | None:
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data:
                self._id = None
                return None
            out = (self._id, "\n".join(self._data))
            self._id, self._data = None, []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "id":
            self._id = value
        elif name == "data":
            self._data.append(value)
        return None


def stream_headers(after: int) -> dict[str, str]:
    """Headers of a stream (re)connection resuming after sequence ``after``."""
    h = {"Accept": "text/event-stream"}
    if after > 0:
        h["Last-Event-ID"] = str(after)
    return h


def batch_items(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batch items with an ``event_id`` each (generated when missing)."""
    out = []
    for it in items:
        it = {k: v for k, v in dict(it).items() if v is not None}
        it.setdefault("event_id", new_event_id())
        out.append(it)
    return out
