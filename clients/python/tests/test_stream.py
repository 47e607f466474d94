"""The event stream: live, reconnecting with Last-Event-ID across a
SIGKILLed and restarted server, never yielding an event twice."""

from __future__ import annotations

import queue
import threading

import pytest

import mission_bus as mb
from mission_bus import Client

WAIT = 30.0


def follow(stream: mb.EventStream, out: "queue.Queue[object]") -> threading.Thread:
    def run() -> None:
        try:
            for ev in stream:
                out.put(ev)
        except Exception as e:  # handed to the test
            out.put(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def take(out: "queue.Queue[object]", n: int) -> list[mb.Event]:
    got = []
    for _ in range(n):
        item = out.get(timeout=WAIT)
        if isinstance(item, Exception):
            raise item
        got.append(item)
    return got


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_stream_survives_server_restart_without_duplicates(server, admin, mission, how):
    mid, lead_token = mission
    lead = Client(server.url, lead_token)
    reader = Client(server.url, lead.add_participant(mid, "rita", "read").token)
    for i in range(3):
        lead.publish(mid, "before", i)
    stream = reader.stream(mid, reconnect_timeout=WAIT)
    out: "queue.Queue[object]" = queue.Queue()
    follow(stream, out)
    first = take(out, 6)  # created, lead joined, rita joined, 3 messages
    assert [e.sequence for e in first] == [1, 2, 3, 4, 5, 6]

    if how == "sigkill":
        server.kill()
    else:
        server.stop()
    server.restart()
    for i in range(3):
        lead.publish(mid, "after", i)
    rest = take(out, 3)
    assert [(e.topic, e.payload) for e in rest] == [("after", 0), ("after", 1), ("after", 2)]
    assert [e.sequence for e in rest] == [7, 8, 9]
    assert stream.reconnects >= 1
    assert stream.last_sequence == 9
    assert out.empty(), "an event was yielded twice"
    log = [e.sequence for e in admin.iter_events(mid)]
    assert [e.sequence for e in first + rest] == log


def test_stream_resumes_after_a_persisted_sequence(server, admin, mission):
    mid, lead_token = mission
    lead = Client(server.url, lead_token)
    for i in range(5):
        lead.publish(mid, "t", i)
    seen = []
    for ev in lead.stream(mid, after=4):
        seen.append(ev.sequence)
        if ev.sequence == 7:
            break
    assert seen == [5, 6, 7]



def test_stream_skips_events_a_server_resends(server, admin, mission):
    import httpx

    mid, lead_token = mission
    lead = Client(server.url, lead_token)
    for i in range(3):
        lead.publish(mid, "t", i)

    class Replay(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()
            self.opened = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            self.opened += 1
            if "stream" not in request.url.path:
                return self.inner.handle_request(request)
            # Serve a finite replay from 1 (ignoring Last-Event-ID) using
            # the real log, as a server without resume support would.
            evs = admin.events(mid, from_=1, limit=1000).events
            upto = min(len(evs), 2 + 2 * self.opened)
            body = "".join(f"id: {e.sequence}\ndata: {__import__('json').dumps(e.raw)}\n\n"
                           for e in evs[:upto])
            return httpx.Response(200, text=body,
                                  headers={"content-type": "text/event-stream"})

    t = Replay()
    c = Client(server.url, lead_token, transport=t)
    seqs = []
    for ev in c.stream(mid):
        seqs.append(ev.sequence)
        if ev.sequence == 5:
            break
    assert seqs == [1, 2, 3, 4, 5] and t.opened >= 2


def test_stream_raises_at_once_on_permission_errors(server, admin, mission):
    mid, _ = mission
    other = admin.create_mission(f"{mid}-o", "o", "lead")
    c = Client(server.url, other.lead_token)
    with pytest.raises(mb.WrongMission):
        next(iter(c.stream(mid)))
