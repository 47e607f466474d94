"""Request builders for every endpoint of docs/api.md, shared by
:class:`~mission_bus.Client` and :class:`~mission_bus.AsyncClient`."""

from __future__ import annotations

from typing import Any, Iterable

from ._common import Req, batch_items, seg, write_body
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


def m(mission_id: str, rest: str = "") -> str:
    return f"/v1/missions/{seg(mission_id)}{rest}"


def health() -> Req:
    return Req("GET", "/v1/health", parse=lambda d: d, idempotent=True)


def create_mission(mission_id: str, title: str, lead: str,
                   profiles: dict[str, Any] | None) -> Req:
    body: dict[str, Any] = {"mission_id": mission_id, "title": title, "lead": lead}
    if profiles is not None:
        body["profiles"] = profiles
    # Not idempotent: a resend after a lost answer would be `mission_exists`.
    return Req("POST", "/v1/missions", MissionCreated.from_json, body)


def add_participant(mission_id: str, name: str, role: str,
                    metadata: dict[str, Any] | None) -> Req:
    body: dict[str, Any] = {"name": name, "role": role}
    if metadata is not None:
        body["metadata"] = metadata
    return Req("POST", m(mission_id, "/participants"), ParticipantAdded.from_json, body)


def reissue_token(mission_id: str, name: str) -> Req:
    return Req("POST", m(mission_id, f"/participants/{seg(name)}/token"),
               TokenIssued.from_json)


def publish(mission_id: str, topic: str, payload: Any,
            expected_sequence: int | None, event_id: str | None) -> Req:
    body = write_body({"topic": topic}, expected_sequence, event_id)
    body["payload"] = payload
    return Req("POST", m(mission_id, "/messages"), Event.from_json, body, idempotent=True)


def checkpoint(mission_id: str, summary: str, state: Any,
               artifacts: Iterable[str] | None, expected_sequence: int | None,
               event_id: str | None) -> Req:
    body = write_body({"summary": summary,
                       "artifacts": None if artifacts is None else list(artifacts)},
                      expected_sequence, event_id)
    body["state"] = state
    return Req("POST", m(mission_id, "/checkpoints"), Event.from_json, body,
               idempotent=True)


def handoff(mission_id: str, recipient: str, checkpoint_id: str, note: str | None,
            expected_sequence: int | None, event_id: str | None) -> Req:
    body = write_body({"recipient": recipient, "checkpoint_id": checkpoint_id,
                       "note": note}, expected_sequence, event_id)
    return Req("POST", m(mission_id, "/handoffs"), Event.from_json, body, idempotent=True)


def batch(mission_id: str, items: Iterable[dict[str, Any]],
          expected_sequence: int | None) -> Req:
    body: dict[str, Any] = {"events": batch_items(items)}
    if expected_sequence is not None:
        body["expected_sequence"] = expected_sequence
    # A batch is not a retry on the server (a stored event id refuses it),
    # so it is resent only when it surely was not written.
    return Req("POST", m(mission_id, "/batch"), BatchResult.from_json, body)


def events(mission_id: str, from_: int, limit: int) -> Req:
    return Req("GET", m(mission_id, "/events"), EventsPage.from_json,
               params={"from": from_, "limit": limit}, idempotent=True)


def resume(mission_id: str, for_: str | None) -> Req:
    params = None if for_ is None else {"for": for_}
    return Req("GET", m(mission_id, "/resume"), ResumePacket.from_json,
               params=params, idempotent=True)


def resume_handoff(mission_id: str, handoff_id: str) -> Req:
    return Req("GET", m(mission_id, f"/handoffs/{seg(handoff_id)}/resume"),
               ResumePacket.from_json, idempotent=True)


def list_missions() -> Req:
    return Req("GET", "/v1/missions", MissionList.from_json, idempotent=True)


def mission(mission_id: str) -> Req:
    return Req("GET", m(mission_id), MissionSummary.from_json, idempotent=True)


def event(mission_id: str, sequence: int) -> Req:
    return Req("GET", m(mission_id, f"/events/{int(sequence)}"), EventRecord.from_json,
               idempotent=True)


def backup(to: str) -> Req:
    return Req("POST", "/v1/admin/backup", lambda d: d, {"to": to})


def verify(mission_id: str) -> Req:
    return Req("GET", m(mission_id, "/verify"), VerifyReport.from_json, idempotent=True)


def message_item(topic: str, payload: Any = None, event_id: str | None = None) -> dict[str, Any]:
    """A batch item for a message."""
    return {"type": "message", "topic": topic, "payload": payload, "event_id": event_id}


def checkpoint_item(summary: str, state: Any = None, artifacts: Iterable[str] | None = None,
                    event_id: str | None = None) -> dict[str, Any]:
    """A batch item for a checkpoint (give it an ``event_id`` to hand it off
    in the same batch: the id is the checkpoint id)."""
    return {"type": "checkpoint", "summary": summary, "state": state,
            "artifacts": None if artifacts is None else list(artifacts),
            "event_id": event_id}


def handoff_item(recipient: str, checkpoint_id: str, note: str | None = None,
                 event_id: str | None = None) -> dict[str, Any]:
    """A batch item for a handoff."""
    return {"type": "handoff", "recipient": recipient, "checkpoint_id": checkpoint_id,
            "note": note, "event_id": event_id}
