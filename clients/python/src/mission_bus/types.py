"""Typed results: dataclasses built from the server's JSON.

Each keeps the JSON it came from in ``raw`` so fields a newer server adds
are never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ID_FIELDS = ("message_id", "checkpoint_id", "handoff_id", "event_id")


@dataclass(frozen=True)
class Event:
    """One log event (``message``, ``checkpoint``, ``handoff``, or a mission
    event such as ``mission_created`` / ``participant_joined``)."""

    event_type: str
    id: str
    sender: str
    sequence: int
    timestamp: str
    topic: str | None = None
    payload: Any = None
    summary: str | None = None
    state: Any = None
    artifacts: list[str] = field(default_factory=list)
    recipient: str | None = None
    checkpoint_id: str | None = None
    note: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Event":
        """Build from the server's event JSON."""
        et = d["event_type"]
        own = {"checkpoint": "checkpoint_id", "message": "message_id",
               "handoff": "handoff_id"}.get(et, "event_id")
        ev_id = d.get(own)
        if ev_id is None:
            ev_id = next((d[k] for k in _ID_FIELDS if k in d), "")
        return cls(
            event_type=et,
            id=ev_id,
            sender=d.get("sender", ""),
            sequence=int(d["sequence"]),
            timestamp=d.get("timestamp", ""),
            topic=d.get("topic"),
            payload=d.get("payload"),
            summary=d.get("summary"),
            state=d.get("state"),
            artifacts=list(d.get("artifacts") or []),
            recipient=d.get("recipient"),
            # A handoff's checkpoint_id names its checkpoint; a checkpoint's
            # is its own id.
            checkpoint_id=d.get("checkpoint_id"),
            note=d.get("note"),
            raw=d,
        )


@dataclass(frozen=True)
class EventsPage:
    """``GET .../events``: ``events`` and ``next``: the ``from`` of the next
    page (an empty page means the reader is at the head), or with
    ``order="desc"`` the ``to`` of the next page (``None`` at the start).
    ``head_sequence`` is the head when the page was read."""

    events: list[Event]
    next: int | None
    head_sequence: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EventsPage":
        nxt = d.get("next")
        return cls([Event.from_json(e) for e in d["events"]],
                   None if nxt is None else int(nxt), int(d.get("head_sequence") or 0))


@dataclass(frozen=True)
class HandoffInfo:
    """A handoff's lifecycle record (``GET .../handoffs``): ``status`` is
    ``offered``, ``accepted``, ``completed``, ``declined``, ``released``,
    ``expired`` or ``revoked``; ``resume_checkpoint_id`` is where its
    holder resumes (its latest checkpoint since accepting, else the offered
    one); ``returned_to`` who got the work back."""

    handoff_id: str
    sender: str
    recipient: str
    status: str
    checkpoint_id: str | None = None
    resume_checkpoint_id: str | None = None
    lease_expires_at: str | None = None
    returned_to: str | None = None
    reoffered_as: str | None = None
    sequence: int = 0
    updated_sequence: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "HandoffInfo":
        return cls(
            handoff_id=d["handoff_id"],
            sender=d.get("sender", ""),
            recipient=d.get("recipient", ""),
            status=d["status"],
            checkpoint_id=d.get("checkpoint_id"),
            resume_checkpoint_id=d.get("resume_checkpoint_id"),
            lease_expires_at=d.get("lease_expires_at"),
            returned_to=d.get("returned_to"),
            reoffered_as=d.get("reoffered_as"),
            sequence=int(d.get("sequence") or 0),
            updated_sequence=int(d.get("updated_sequence") or 0),
            raw=d,
        )


@dataclass(frozen=True)
class HandoffStep:
    """A lifecycle step's answer: the stored ``event``
    (``handoff_accepted``, ...) and the handoff's record after it."""

    event: Event
    handoff: HandoffInfo

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "HandoffStep":
        return cls(Event.from_json(d["event"]), HandoffInfo.from_json(d["handoff"]))


@dataclass(frozen=True)
class CheckpointsPage:
    """``GET .../checkpoints``: checkpoint events newest first;
    ``next_before`` is the ``before`` of the next page (``None``: no more)."""

    checkpoints: list[Event]
    next_before: int | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CheckpointsPage":
        nb = d.get("next_before")
        return cls([Event.from_json(e) for e in d.get("checkpoints") or []],
                   None if nb is None else int(nb))


@dataclass(frozen=True)
class ConsumerPosition:
    """A durable consumer position: ``participant``'s ``consumer`` has
    acknowledged everything up to ``position``. ``updated_at`` is ``None``
    in an acknowledgement's answer."""

    participant: str
    consumer: str
    position: int
    updated_at: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ConsumerPosition":
        return cls(d["participant"], d["consumer"], int(d["position"]), d.get("updated_at"))


@dataclass(frozen=True)
class ResumePacket:
    """Where a recipient picks up: the handoff (or, ``source ==
    "checkpoint"``, its own latest checkpoint, with ``handoff_id`` None),
    the checkpoint to resume from, work ``returned`` to it, the roster."""

    mission_id: str
    title: str
    recipient: str
    sender: str | None
    handoff_id: str | None
    handoff_note: str
    checkpoint: Event
    participants: dict[str, Any]
    isolation_profiles: list[Any]
    stream_length: int
    head_sequence: int
    source: str = "handoff"
    handoff_status: str | None = None
    returned: list[HandoffInfo] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ResumePacket":
        return cls(
            mission_id=d["mission_id"],
            title=d.get("title", ""),
            recipient=d["recipient"],
            sender=d.get("sender"),
            handoff_id=d.get("handoff_id"),
            handoff_note=d.get("handoff_note") or "",
            checkpoint=Event.from_json(d["checkpoint"]),
            participants=dict(d.get("participants") or {}),
            isolation_profiles=list(d.get("isolation_profiles") or []),
            stream_length=int(d.get("stream_length", 0)),
            head_sequence=int(d.get("head_sequence", 0)),
            source=d.get("source") or "handoff",
            handoff_status=d.get("handoff_status"),
            returned=[HandoffInfo.from_json(h) for h in d.get("returned") or []],
            raw=d,
        )


@dataclass(frozen=True)
class Problem:
    """One problem a verification found, at ``sequence``."""

    sequence: int | None
    problem: str


@dataclass(frozen=True)
class VerifyReport:
    """``GET .../verify``: ``intact`` is False when ``problems`` is not empty."""

    mission_id: str
    intact: bool
    events_checked: int
    head_sequence: int
    head_hash: str | None
    problems: list[Problem]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "VerifyReport":
        return cls(
            mission_id=d["mission_id"],
            intact=bool(d["intact"]),
            events_checked=int(d["events_checked"]),
            head_sequence=int(d["head_sequence"]),
            head_hash=d.get("head_hash"),
            problems=[Problem(p.get("sequence"), p.get("problem", ""))
                      for p in d.get("problems") or []],
        )


@dataclass(frozen=True)
class MissionCreated:
    """``POST /v1/missions``: keep ``lead_token``, it is shown only once."""

    mission_id: str
    lead: str
    lead_token: str
    head_sequence: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MissionCreated":
        return cls(d["mission_id"], d["lead"], d["lead_token"], int(d["head_sequence"]))


@dataclass(frozen=True)
class ParticipantAdded:
    """``POST .../participants``: keep ``token``, it is shown only once."""

    name: str
    role: str
    token: str
    sequence: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ParticipantAdded":
        return cls(d["name"], d["role"], d["token"], int(d["sequence"]))


@dataclass(frozen=True)
class TokenIssued:
    """``POST .../participants/{name}/token``: the new token; ``revoked``
    counts the earlier ones that stopped working."""

    name: str
    token: str
    revoked: Any

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TokenIssued":
        return cls(d["name"], d["token"], d.get("revoked"))


@dataclass(frozen=True)
class BatchResult:
    """``POST .../batch``: the stored events, in order, and the new head."""

    events: list[Event]
    head_sequence: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BatchResult":
        return cls([Event.from_json(e) for e in d["events"]], int(d["head_sequence"]))


@dataclass(frozen=True)
class MissionSummary:
    """A mission as ``GET /v1/missions`` lists it: ``verify`` is ``None``
    until someone verifies it through the server; ``error`` is set (and the
    rest empty) for a mission whose state cannot be loaded."""

    mission_id: str
    title: str = ""
    head_sequence: int = 0
    last_activity: str | None = None
    participants: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    verify: dict[str, Any] | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MissionSummary":
        return cls(
            mission_id=d["mission_id"],
            title=d.get("title", ""),
            head_sequence=int(d.get("head_sequence") or 0),
            last_activity=d.get("last_activity"),
            participants=list(d.get("participants") or []),
            counts=dict(d.get("counts") or {}),
            verify=d.get("verify"),
            error=d.get("error"),
            raw=d,
        )


@dataclass(frozen=True)
class MissionList:
    """``GET /v1/missions``: who is asking (``caller``) and the missions it
    may see, sorted by id."""

    caller: dict[str, Any]
    missions: list[MissionSummary]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MissionList":
        return cls(dict(d.get("caller") or {}),
                   [MissionSummary.from_json(m) for m in d.get("missions") or []])


@dataclass(frozen=True)
class EventRecord:
    """``GET .../events/{seq}``: one event with its chain hashes."""

    mission_id: str
    event: Event
    hash: str
    previous_hash: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EventRecord":
        return cls(d["mission_id"], Event.from_json(d["event"]), d["hash"],
                   d["previous_hash"])
