"""Issue 12's endpoints through the client against a real server: the
handoff lifecycle (typed records, the errors of a wrong step), checkpoint
reads, filtered reads, consumer positions, membership changes and token
rotation; sync and async."""

from __future__ import annotations

import asyncio

import pytest

import mission_bus as mb
from mission_bus import AsyncClient, Client


@pytest.fixture
def team(server, admin, mission):
    """lead, ada and bob (writers), audra (auditor): their clients."""
    mid, lead_token = mission
    clients = {"lead": Client(server.url, lead_token)}
    for name, role in (("ada", "write"), ("bob", "write"), ("audra", "audit")):
        clients[name] = Client(server.url, admin.add_participant(mid, name, role).token)
    yield mid, clients
    for c in clients.values():
        c.close()


def test_handoff_lifecycle_with_typed_records(team, admin):
    mid, c = team
    ada, bob = c["ada"], c["bob"]
    cp = ada.checkpoint(mid, "lexer", {"n": 1})
    ho = ada.handoff(mid, "bob", cp.id, note="yours")

    [offered] = bob.handoffs(mid)
    assert isinstance(offered, mb.HandoffInfo)
    assert (offered.handoff_id, offered.status, offered.sender, offered.checkpoint_id) == (
        ho.id, "offered", "ada", cp.id)
    assert ada.handoffs(mid) == [], "ada's own list: nothing addressed to her"

    with pytest.raises(mb.SenderMismatch):
        # The client never claims a sender: a forged one is the server's 403.
        ada._call(mb._requests.Req("POST", f"/v1/missions/{mid}/handoffs/{ho.id}/accept",
                                   lambda d: d, {"sender": "bob"}))
    with pytest.raises(mb.Forbidden):
        ada.accept(mid, ho.id)  # not the recipient

    step = bob.accept(mid, ho.id, lease_ms=30_000)
    assert isinstance(step, mb.HandoffStep)
    assert step.event.event_type == "handoff_accepted" and step.event.sender == "bob"
    assert step.handoff.status == "accepted" and step.handoff.lease_expires_at
    with pytest.raises(mb.LifecycleConflict) as e:
        bob.accept(mid, ho.id)
    assert e.value.status == 409 and e.value.code == "conflict"

    hb = bob.heartbeat(mid, ho.id, lease_ms=60_000)
    assert hb.event.event_type == "handoff_heartbeat"
    assert hb.handoff.lease_expires_at > step.handoff.lease_expires_at
    mine = bob.checkpoint(mid, "parser half", {"n": 2})
    assert bob.handoff_info(mid, ho.id).resume_checkpoint_id == mine.id
    packet = bob.resume(mid)
    assert (packet.source, packet.handoff_id, packet.handoff_status) == (
        "handoff", ho.id, "accepted")
    assert packet.checkpoint.id == mine.id

    done = bob.complete(mid, ho.id, note="merged")
    assert done.event.event_type == "handoff_completed" and done.handoff.status == "completed"
    with pytest.raises(mb.LifecycleConflict):
        bob.heartbeat(mid, ho.id)

    # Declined, and released after accepting: the work returns to ada.
    ho2 = ada.handoff(mid, "bob", cp.id)
    assert bob.decline(mid, ho2.id, note="busy").handoff.status == "declined"
    ho3 = ada.handoff(mid, "bob", cp.id)
    bob.accept(mid, ho3.id)
    released = bob.release(mid, ho3.id)
    assert released.handoff.status == "released" and released.handoff.returned_to == "ada"
    back = ada.resume(mid)
    assert {h.handoff_id for h in back.returned} >= {ho3.id}

    # A lease that lapses: the admin expires it with an explicit time.
    ho4 = ada.handoff(mid, "bob", cp.id)
    bob.accept(mid, ho4.id, lease_ms=1000)
    expired = admin.expire_leases(mid, at="2999-01-01T00:00:00Z")
    assert [e.event_type for e in expired] == ["handoff_expired"]
    assert admin.handoff_info(mid, ho4.id).status == "expired"
    with pytest.raises(mb.AdminOnly):
        ada.expire_leases(mid)
    statuses = {h.handoff_id: h.status for h in admin.handoffs(mid)}
    assert statuses == {ho.id: "completed", ho2.id: "declined", ho3.id: "released",
                        ho4.id: "expired"}
    with pytest.raises(mb.HandoffNotFound):
        bob.accept(mid, "01a2350d-0000-7000-8000-000000000000")
    with pytest.raises(ValueError):
        mb._requests.handoff_step(mid, ho.id, "snooze")


def test_checkpoints_reads_and_paging(team, admin):
    mid, c = team
    ada, bob = c["ada"], c["bob"]
    made = [ada.checkpoint(mid, f"a{i}", {"i": i}) for i in range(5)]
    theirs = bob.checkpoint(mid, "b", {})
    page = ada.checkpoints(mid, sender="ada", limit=2)
    assert isinstance(page, mb.CheckpointsPage)
    assert [e.id for e in page.checkpoints] == [made[4].id, made[3].id]
    seen = [e.id for e in page.checkpoints]
    while page.next_before is not None:
        page = ada.checkpoints(mid, sender="ada", limit=2, before=page.next_before)
        seen += [e.id for e in page.checkpoints]
    assert seen == [e.id for e in reversed(made)]
    assert [e.id for e in admin.checkpoints(mid).checkpoints][:2] == [theirs.id, made[4].id]
    assert ada.get_checkpoint(mid, made[1].id).state == {"i": 1}
    assert ada.latest_checkpoint(mid).id == made[4].id
    assert ada.latest_checkpoint(mid, "bob").id == theirs.id
    with pytest.raises(mb.InvalidQuery):
        admin.latest_checkpoint(mid)  # the admin must name a sender
    with pytest.raises(mb.CheckpointNotFound):
        ada.get_checkpoint(mid, "01a2350d-0000-7000-8000-000000000000")


def test_filtered_reads_and_consumer_positions(team, admin):
    mid, c = team
    ada, bob, audra = c["ada"], c["bob"], c["audra"]
    for i in range(6):
        ada.publish(mid, "build/step" if i % 2 else "chat", i)
    bob.publish(mid, "build/done", "ok")
    page = audra.events(mid, types="message", topic_prefix="build/")
    assert [(e.sender, e.payload) for e in page.events] == [
        ("ada", 1), ("ada", 3), ("ada", 5), ("bob", "ok")]
    last2 = audra.events(mid, types=["message"], order="desc", limit=2)
    assert [e.payload for e in last2.events] == ["ok", 5]
    by_bob = audra.events(mid, sender="bob", from_=None, limit=None)
    assert [e.topic for e in by_bob.events if e.event_type == "message"] == ["build/done"]
    with pytest.raises(mb.InvalidQuery):
        audra.events(mid, order="sideways")

    first = audra.events(mid, limit=5)
    pos = audra.ack(mid, "main", first.events[-1].sequence)
    assert isinstance(pos, mb.ConsumerPosition) and pos.position == 5
    assert audra.ack(mid, "main", 2).position == 5, "a position never moves back"
    rest = audra.events(mid, consumer="main")
    assert rest.events[0].sequence == 6
    bob.ack(mid, "inbox", 3)
    assert [(p.participant, p.consumer, p.position) for p in bob.consumers(mid)] == [
        ("bob", "inbox", 3)]
    everyone = {(p.participant, p.consumer) for p in audra.consumers(mid)}
    assert everyone == {("audra", "main"), ("bob", "inbox")}
    assert all(p.updated_at for p in audra.consumers(mid))
    audra.delete_consumer(mid, "main")
    assert {p.consumer for p in admin.consumers(mid)} == {"inbox"}
    with pytest.raises(mb.NotFound):
        audra.delete_consumer(mid, "main")


def test_membership_and_tokens(server, team, admin):
    mid, c = team
    lead, ada, bob = c["lead"], c["ada"], c["bob"]
    changed = lead.change_role(mid, "bob", "read")
    assert changed.event_type == "role_changed"
    with pytest.raises(mb.PermissionDenied):
        bob.publish(mid, "t", 1)
    with pytest.raises(mb.Forbidden):
        ada.change_role(mid, "bob", "write")  # not a lead

    rotated = ada.rotate_token(mid)
    assert isinstance(rotated, mb.TokenIssued) and rotated.name == "ada"
    with pytest.raises(mb.Unauthorized):
        ada.publish(mid, "t", 1)  # the old token stopped working
    with Client(server.url, rotated.token) as ada2:
        assert ada2.publish(mid, "t", 1).sender == "ada"
        extra = admin.reissue_token(mid, "ada", rotate=False)
        assert extra.revoked == 0
        assert ada2.publish(mid, "t", 2).sequence > 0, "rotate=False keeps the others"
        with pytest.raises(mb.LeadOnly):
            ada2.reissue_token(mid, "bob")

    removed = lead.remove_participant(mid, "bob")
    assert removed.event_type == "participant_removed"
    with pytest.raises(mb.Unauthorized):
        bob.events(mid)
    with pytest.raises(mb.NotFound):
        lead.remove_participant(mid, "bob")


def test_async_lifecycle_round_trip(server, team):
    mid, c = team
    tokens = {n: cl._http.headers["Authorization"].split()[1] for n, cl in c.items()}

    async def run():
        async with AsyncClient(server.url, tokens["ada"]) as ada, \
                AsyncClient(server.url, tokens["bob"]) as bob, \
                AsyncClient(server.url, server.admin_token) as admin:
            cp = await ada.checkpoint(mid, "s", {"n": 1})
            ho = await ada.handoff(mid, "bob", cp.id)
            assert [h.status for h in await bob.handoffs(mid)] == ["offered"]
            acc = await bob.accept(mid, ho.id, lease_ms=5000)
            assert acc.handoff.status == "accepted"
            assert (await bob.heartbeat(mid, ho.id)).event.event_type == "handoff_heartbeat"
            with pytest.raises(mb.LifecycleConflict):
                await bob.decline(mid, ho.id)  # only while offered
            assert (await bob.complete(mid, ho.id)).handoff.status == "completed"
            assert (await ada.latest_checkpoint(mid)).id == cp.id
            page = await ada.checkpoints(mid, sender="ada")
            assert [e.id for e in page.checkpoints] == [cp.id]
            assert (await admin.get_checkpoint(mid, cp.id)).summary == "s"
            assert (await bob.ack(mid, "c", 2)).position == 2
            assert [p.consumer for p in await bob.consumers(mid)] == ["c"]
            await bob.delete_consumer(mid, "c")
            evs = await ada.events(mid, types="handoff_completed")
            assert [e.sender for e in evs.events] == ["bob"]
            ho2 = await ada.handoff(mid, "bob", cp.id)
            await bob.accept(mid, ho2.id)
            assert (await bob.release(mid, ho2.id)).handoff.returned_to == "ada"
            assert (await admin.handoff_info(mid, ho2.id)).status == "released"
            assert (await admin.expire_leases(at="2999-01-01T00:00:00Z")) == []
            assert (await admin.change_role(mid, "bob", "read")).event_type == "role_changed"
            assert (await admin.remove_participant(mid, "bob")).event_type == "participant_removed"
            with pytest.raises(mb.Unauthorized):
                await bob.handoffs(mid)
            rotated = await ada.rotate_token(mid)
            assert rotated.token.startswith("mb_")

    asyncio.run(run())


def test_filtered_stream_yields_only_matches_once(team):
    mid, c = team
    ada, audra = c["ada"], c["audra"]
    for i in range(4):
        ada.publish(mid, "build/x" if i % 2 else "chat", i)
    cp = ada.checkpoint(mid, "s", {})
    got = []
    for e in audra.stream(mid, types=["message", "checkpoint"], sender="ada"):
        got.append((e.event_type, e.payload))
        if e.event_type == "checkpoint":
            break
    assert got == [("message", 0), ("message", 1), ("message", 2), ("message", 3),
                   ("checkpoint", None)]
    topics = []
    for e in audra.stream(mid, topic_prefix="build/"):
        topics.append(e.payload)
        if len(topics) == 2:
            break
    assert topics == [1, 3]
    assert cp.sequence > 0


def test_async_filtered_stream(server, team):
    mid, c = team
    ada = c["ada"]
    for i in range(3):
        ada.publish(mid, "build/x" if i % 2 else "chat", i)
    ada.checkpoint(mid, "s", {})
    token = c["audra"]._http.headers["Authorization"].split()[1]

    async def run():
        async with AsyncClient(server.url, token) as audra:
            got = []
            async for e in audra.stream(mid, types="checkpoint"):
                got.append(e.event_type)
                break
            chat = []
            async for e in audra.stream(mid, topic_prefix="chat", sender="ada"):
                chat.append(e.payload)
                if len(chat) == 2:
                    break
            return got, chat

    assert asyncio.run(run()) == (["checkpoint"], [0, 2])
