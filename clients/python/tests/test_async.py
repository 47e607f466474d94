"""The asyncio client against a real server: the same endpoints, errors and
a stream that survives a SIGKILLed server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import mission_bus as mb
from mission_bus import AsyncClient


async def test_async_round_trip(server, mission):
    mid, lead_token = mission
    async with AsyncClient(server.url, server.admin_token) as admin, \
            AsyncClient(server.url, lead_token) as lead:
        assert (await admin.health())["status"] == "ok"
        bob = await lead.add_participant(mid, "bob", "write")
        msg = await lead.publish(mid, "status", {"step": 1})
        assert isinstance(msg, mb.Event) and msg.sender == "lead"
        cp = await lead.checkpoint(mid, "done", {"n": 1}, artifacts=["a.txt"],
                                   expected_sequence=msg.sequence)
        ho = await lead.handoff(mid, "bob", cp.id, note="go")
        async with AsyncClient(server.url, bob.token) as b:
            packet = await b.resume(mid)
        assert packet.handoff_id == ho.id and packet.checkpoint.state == {"n": 1}
        assert (await admin.resume_handoff(mid, ho.id)).recipient == "bob"
        res = await lead.batch(mid, [mb.message_item("x"), mb.message_item("y", 2)])
        assert [e.topic for e in res.events] == ["x", "y"]
        seqs = [e.sequence async for e in admin.iter_events(mid, page_size=2)]
        assert seqs == list(range(1, res.head_sequence + 1))
        page = await admin.events(mid, from_=2, limit=2)
        assert [e.sequence for e in page.events] == [2, 3] and page.next == 4
        report = await admin.verify(mid)
        assert report.intact and report.head_sequence == res.head_sequence
        issued = await admin.reissue_token(mid, "bob")
        assert issued.token != bob.token
        fixed = str(uuid.uuid4())
        e1 = await lead.publish(mid, "t", 1, event_id=fixed)
        e2 = await lead.publish(mid, "t", 1, event_id=fixed)
        assert e1.sequence == e2.sequence
        with pytest.raises(mb.SequenceConflict) as err:
            await lead.publish(mid, "t", 1, expected_sequence=1)
        assert (err.value.status, err.value.code) == (409, "sequence_conflict")
        with pytest.raises(mb.ParticipantOnly):
            await admin.publish(mid, "t", 1)
        with pytest.raises(mb.MissionNotFound):
            await admin.verify("nope")


async def test_async_stream_survives_sigkill(server, mission):
    mid, lead_token = mission
    async with AsyncClient(server.url, lead_token) as lead:
        await lead.publish(mid, "before", 0)
        stream = lead.stream(mid, reconnect_timeout=30)
        it = stream.__aiter__()
        first = [await asyncio.wait_for(it.__anext__(), 30) for _ in range(3)]
        assert [e.sequence for e in first] == [1, 2, 3]
        server.kill()
        server.restart()
        await lead.publish(mid, "after", 1)
        await lead.publish(mid, "after", 2)
        rest = [await asyncio.wait_for(it.__anext__(), 30) for _ in range(2)]
        assert [(e.sequence, e.payload) for e in rest] == [(4, 1), (5, 2)]
        assert stream.reconnects >= 1 and stream.last_sequence == 5
        await it.aclose()
