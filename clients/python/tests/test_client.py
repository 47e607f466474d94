"""The sync client against a real server: every endpoint, typed results,
errors as exception classes, safe retries."""

from __future__ import annotations

import uuid

import httpx
import pytest

import mission_bus as mb
from mission_bus import Client


def test_health_needs_no_token(server):
    with Client(server.url) as anon:
        h = anon.health()
    assert h["status"] == "ok" and h["version"]


def test_every_endpoint_round_trip(server, admin, mission):
    mid, lead_token = mission
    lead = Client(server.url, lead_token)
    ada = lead.add_participant(mid, "ada", "write", metadata={"host": "box-1"})
    assert isinstance(ada, mb.ParticipantAdded)
    assert ada.name == "ada" and ada.role == "write" and ada.token.startswith("mb_")
    bob = admin.add_participant(mid, "bob", "write")
    a = Client(server.url, ada.token)

    msg = a.publish(mid, "status", {"step": 1})
    assert isinstance(msg, mb.Event)
    assert (msg.event_type, msg.sender, msg.topic, msg.payload) == (
        "message", "ada", "status", {"step": 1})
    uuid.UUID(msg.id)  # the generated event id is the message id

    cp = a.checkpoint(mid, "lexer done", {"next": "parser"}, artifacts=["lexer.rs"],
                      expected_sequence=msg.sequence)
    assert cp.event_type == "checkpoint" and cp.sequence == msg.sequence + 1
    assert cp.state == {"next": "parser"} and cp.artifacts == ["lexer.rs"]
    assert cp.checkpoint_id == cp.id

    ho = a.handoff(mid, "bob", cp.id, note="your turn")
    assert ho.event_type == "handoff" and ho.recipient == "bob"
    assert ho.checkpoint_id == cp.id and ho.note == "your turn"

    b = Client(server.url, bob.token)
    packet = b.resume(mid)
    assert isinstance(packet, mb.ResumePacket)
    assert packet.recipient == "bob" and packet.sender == "ada"
    assert packet.handoff_id == ho.id and packet.handoff_note == "your turn"
    assert packet.checkpoint.id == cp.id and packet.checkpoint.state == {"next": "parser"}
    assert set(packet.participants) == {"lead", "ada", "bob"}
    assert packet.head_sequence == ho.sequence
    assert admin.resume(mid, for_="bob").handoff_id == ho.id
    assert admin.resume_handoff(mid, ho.id).checkpoint.id == cp.id

    res = b.batch(mid, [
        mb.message_item("plan", {"a": 1}),
        mb.checkpoint_item("parser done", {"n": 2}, event_id=(cid := str(uuid.uuid4()))),
        mb.handoff_item("ada", cid, note="back to you"),
    ], expected_sequence=ho.sequence)
    assert isinstance(res, mb.BatchResult)
    assert [e.event_type for e in res.events] == ["message", "checkpoint", "handoff"]
    assert res.head_sequence == ho.sequence + 3 == res.events[-1].sequence
    assert res.events[1].id == cid and res.events[2].checkpoint_id == cid

    page = admin.events(mid, from_=1, limit=3)
    assert isinstance(page, mb.EventsPage)
    assert [e.sequence for e in page.events] == [1, 2, 3] and page.next == 4
    assert page.events[0].event_type == "mission_created"
    every = list(b.iter_events(mid, page_size=2))
    assert [e.sequence for e in every] == list(range(1, res.head_sequence + 1))
    assert admin.events(mid, from_=res.head_sequence + 1).events == []

    report = admin.verify(mid)
    assert isinstance(report, mb.VerifyReport)
    assert report.intact and report.problems == []
    assert report.head_sequence == res.head_sequence == report.events_checked
    assert report.mission_id == mid

    new = lead.reissue_token(mid, "ada")
    assert isinstance(new, mb.TokenIssued) and new.token != ada.token
    with pytest.raises(mb.Unauthorized) as e:
        a.publish(mid, "status", "old token")
    assert e.value.status == 401 and e.value.code == "unknown_token"
    assert Client(server.url, new.token).publish(mid, "status", 2).sender == "ada"


def test_explicit_event_id_is_idempotent(server, admin, mission):
    mid, lead_token = mission
    lead = Client(server.url, lead_token)
    fixed = str(uuid.uuid4())
    first = lead.publish(mid, "t", {"x": 1}, event_id=fixed)
    again = lead.publish(mid, "t", {"x": 1}, event_id=fixed)
    assert first.id == fixed and again.sequence == first.sequence
    assert admin.events(mid, from_=first.sequence + 1).events == []
    with pytest.raises(mb.EventIdConflict) as e:
        lead.publish(mid, "t", {"x": 2}, event_id=fixed)
    assert (e.value.status, e.value.code) == (409, "event_id_conflict")


@pytest.mark.parametrize("case", [
    "sequence_conflict", "permission_denied", "mission_not_found", "unknown_token",
    "mission_exists", "participant_only", "wrong_mission", "checkpoint_not_found",
    "invalid_input", "participant_exists", "admin_only",
])
def test_errors_map_to_classes(server, admin, mission, case):
    mid, lead_token = mission
    lead = Client(server.url, lead_token)
    reader = Client(server.url, lead.add_participant(mid, "rita", "read").token)
    other = admin.create_mission(f"{mid}-other", "other", "lead")
    calls = {
        "sequence_conflict": (mb.SequenceConflict, 409,
                              lambda: lead.publish(mid, "t", 1, expected_sequence=1)),
        "permission_denied": (mb.PermissionDenied, 403, lambda: reader.publish(mid, "t", 1)),
        "mission_not_found": (mb.MissionNotFound, 404, lambda: admin.events("no-such")),
        "unknown_token": (mb.Unauthorized, 401,
                          lambda: Client(server.url, "mb_" + "0" * 64).events(mid)),
        "mission_exists": (mb.MissionExists, 409,
                           lambda: admin.create_mission(mid, "again", "lead")),
        "participant_only": (mb.ParticipantOnly, 403, lambda: admin.publish(mid, "t", 1)),
        "wrong_mission": (mb.WrongMission, 403,
                          lambda: Client(server.url, other.lead_token).events(mid)),
        "checkpoint_not_found": (mb.CheckpointNotFound, 404,
                                 lambda: lead.handoff(mid, "rita", str(uuid.uuid4()))),
        "invalid_input": (mb.BadRequest, 400,
                          lambda: admin.create_mission("bad/name", "x", "lead")),
        "participant_exists": (mb.ParticipantExists, 409,
                               lambda: lead.add_participant(mid, "rita", "read")),
        "admin_only": (mb.Forbidden, 403, lambda: lead.create_mission("m2", "x", "lead")),
    }
    cls, status, call = calls[case]
    with pytest.raises(cls) as e:
        call()
    err = e.value
    assert isinstance(err, mb.MissionBusError)
    assert err.status == status and err.message
    if case not in ("invalid_input",):
        assert err.code == case
    assert admin.verify(mid).intact


class LoseFirstAnswer(httpx.BaseTransport):
    """Sends each request to the real server, but the first answer to a
    POST is lost (a read error), as when a connection dies mid-response."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        if request.method == "POST" and self.lost == 0:
            resp.read()
            resp.close()
            self.lost += 1
            raise httpx.ReadError("connection reset (test)", request=request)
        return resp


def test_write_retried_after_lost_answer_is_stored_once(server, admin, mission):
    mid, lead_token = mission
    transport = LoseFirstAnswer()
    lead = Client(server.url, lead_token, transport=transport)
    head = admin.events(mid, from_=1, limit=1000).events[-1].sequence
    ev = lead.checkpoint(mid, "once", {"k": 1})
    assert transport.lost == 1
    after = admin.events(mid, from_=head + 1).events
    assert [e.id for e in after] == [ev.id], "the retried write was stored twice"


class Unavailable503Once(httpx.BaseTransport):
    """Answers the first request with the server's 503 `unavailable`."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent == 1:
            return httpx.Response(503, json={"error": {
                "code": "unavailable", "message": "the store is closing"}})
        return self.inner.handle_request(request)


def test_unavailable_is_retried_and_other_errors_are_not(server, admin, mission):
    mid, lead_token = mission
    t = Unavailable503Once()
    lead = Client(server.url, lead_token, transport=t)
    assert lead.publish(mid, "t", 1).sender == "lead" and t.sent == 2
    t2 = Unavailable503Once()
    no_retry = Client(server.url, lead_token, transport=t2, retries=0)
    with pytest.raises(mb.Unavailable) as e:
        no_retry.publish(mid, "t", 1)
    assert e.value.status == 503 and t2.sent == 1


def test_connection_refused_raises_connection_failed(tmp_path):
    with Client("http://127.0.0.1:9", "x", retries=1) as c:
        with pytest.raises(mb.ConnectionFailed) as e:
            c.health()
    assert isinstance(e.value, mb.MissionBusError) and e.value.status == 0


def test_mission_listing_summary_event_record_and_backup(server, admin, mission, tmp_path):
    mid, lead_token = mission
    lead = Client(server.url, lead_token)
    msg = lead.publish(mid, "status", {"step": 1})
    listed = admin.list_missions()
    assert isinstance(listed, mb.MissionList) and listed.caller["kind"] == "admin"
    assert mid in [m.mission_id for m in listed.missions]
    own = lead.list_missions()
    assert [m.mission_id for m in own.missions] == [mid]
    assert own.caller["kind"] == "participant"
    summary = lead.mission(mid)
    assert isinstance(summary, mb.MissionSummary)
    assert summary.head_sequence == msg.sequence and summary.counts["messages"] == 1
    assert [p["name"] for p in summary.participants] == ["lead"]
    rec = admin.event(mid, msg.sequence)
    assert isinstance(rec, mb.EventRecord)
    assert rec.event.id == msg.id and len(rec.hash) == 64 and rec.hash != rec.previous_hash
    assert admin.event(mid, 1).previous_hash == "0" * 64
    with pytest.raises(mb.EventNotFound) as e:
        admin.event(mid, msg.sequence + 1)
    assert e.value.code == "event_not_found"
    out = admin.backup(str(tmp_path / "backup"))
    assert out["missions"] >= 1 and out["events"] >= msg.sequence
    with pytest.raises(mb.Forbidden):
        lead.backup(str(tmp_path / "other"))
