"""Request builders for every endpoint of docs/api.md, shared by
:class:`~mission_bus.Client` and :class:`~mission_bus.AsyncClient`."""

from __future__ import annotations

from typing import Any, Iterable

from ._common import Req, batch_items, seg, write_body
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


def reissue_token(mission_id: str, name: str, rotate: bool = True) -> Req:
    return Req("POST", m(mission_id, f"/participants/{seg(name)}/token"),
               TokenIssued.from_json, {"rotate": bool(rotate)})


def rotate_own_token(mission_id: str) -> Req:
    return Req("POST", m(mission_id, "/token"), TokenIssued.from_json)


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


def filter_params(types: Iterable[str] | str | None = None, sender: str | None = None,
                  recipient: str | None = None, topic_prefix: str | None = None,
                  from_: int | None = None, to: int | None = None,
                  order: str | None = None, limit: int | None = None,
                  consumer: str | None = None) -> list[tuple[str, Any]]:
    """The query parameters of a filtered read or stream (``type`` repeated)."""
    out: list[tuple[str, Any]] = []
    if isinstance(types, str):
        types = [types]
    for t in types or ():
        out.append(("type", t))
    for k, v in (("sender", sender), ("recipient", recipient), ("topic_prefix", topic_prefix),
                 ("from", from_), ("to", to), ("order", order), ("limit", limit),
                 ("consumer", consumer)):
        if v is not None:
            out.append((k, v))
    return out


def events(mission_id: str, from_: int | None, limit: int | None, **filters: Any) -> Req:
    return Req("GET", m(mission_id, "/events"), EventsPage.from_json,
               params=filter_params(from_=from_, limit=limit, **filters),  # type: ignore[arg-type]
               idempotent=True)


# -- handoff lifecycle, checkpoints, membership, consumers (issue 12) ---------

STEPS = ("accept", "heartbeat", "complete", "decline", "release")


def handoff_step(mission_id: str, handoff_id: str, step: str, lease_ms: int | None = None,
                 note: str | None = None) -> Req:
    if step not in STEPS:
        raise ValueError(f"unknown handoff step {step!r} (expected one of {', '.join(STEPS)})")
    body: dict[str, Any] = {}
    if lease_ms is not None:
        body["lease_ms"] = int(lease_ms)
    if note is not None:
        body["note"] = note
    # Not resent after a lost answer: a second accept is a conflict.
    return Req("POST", m(mission_id, f"/handoffs/{seg(handoff_id)}/{step}"),
               HandoffStep.from_json, body)


def handoffs(mission_id: str, recipient: str | None) -> Req:
    params = None if recipient is None else {"recipient": recipient}
    return Req("GET", m(mission_id, "/handoffs"),
               lambda d: [HandoffInfo.from_json(h) for h in d["handoffs"]],
               params=params, idempotent=True)


def handoff_info(mission_id: str, handoff_id: str) -> Req:
    return Req("GET", m(mission_id, f"/handoffs/{seg(handoff_id)}"), HandoffInfo.from_json,
               idempotent=True)


def checkpoints(mission_id: str, sender: str | None, before: int | None,
                limit: int | None) -> Req:
    params = {k: v for k, v in (("sender", sender), ("before", before), ("limit", limit))
              if v is not None}
    return Req("GET", m(mission_id, "/checkpoints"), CheckpointsPage.from_json,
               params=params or None, idempotent=True)


def get_checkpoint(mission_id: str, checkpoint_id: str) -> Req:
    return Req("GET", m(mission_id, f"/checkpoints/{seg(checkpoint_id)}"), Event.from_json,
               idempotent=True)


def latest_checkpoint(mission_id: str, sender: str | None) -> Req:
    params = None if sender is None else {"sender": sender}
    return Req("GET", m(mission_id, "/checkpoints/latest"), Event.from_json,
               params=params, idempotent=True)


def change_role(mission_id: str, name: str, role: str) -> Req:
    return Req("PATCH", m(mission_id, f"/participants/{seg(name)}"), Event.from_json,
               {"role": role})


def remove_participant(mission_id: str, name: str) -> Req:
    return Req("DELETE", m(mission_id, f"/participants/{seg(name)}"), Event.from_json)


def ack(mission_id: str, consumer: str, sequence: int) -> Req:
    # Positions never move back, so a resend is harmless.
    return Req("POST", m(mission_id, f"/consumers/{seg(consumer)}/ack"),
               ConsumerPosition.from_json, {"sequence": int(sequence)}, idempotent=True)


def consumers(mission_id: str) -> Req:
    return Req("GET", m(mission_id, "/consumers"),
               lambda d: [ConsumerPosition.from_json(c) for c in d["consumers"]],
               idempotent=True)


def delete_consumer(mission_id: str, consumer: str) -> Req:
    return Req("DELETE", m(mission_id, f"/consumers/{seg(consumer)}"), lambda d: None,
               idempotent=True)


def expire_leases(mission_id: str | None, at: str | None) -> Req:
    body = {k: v for k, v in (("mission_id", mission_id), ("at", at)) if v is not None}
    return Req("POST", "/v1/admin/expire",
               lambda d: [Event.from_json(e) for e in d["events"]], body)


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
