"""Exceptions: one class per family of the server's error codes.

Every error the server sends is JSON, ``{"error": {"code", "message"}}``.
:func:`error_from_response` turns it into an instance of the class that
``code`` maps to (``SequenceConflict`` for ``sequence_conflict``, ...); all
of them derive from :class:`MissionBusError`, which carries ``status``,
``code`` and ``message``. Codes this client does not know map by HTTP
status, so a newer server never breaks ``except`` clauses.
"""

from __future__ import annotations

from typing import Any


class MissionBusError(Exception):
    """Any error from the bus: HTTP ``status``, stable ``code``, ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ConnectionFailed(MissionBusError):
    """The server could not be reached after every retry (status 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "connection_failed", message)


class BadRequest(MissionBusError):
    """400: malformed body, bad name/UUID/number, unknown role, bad header."""


class InvalidInput(BadRequest):
    """400 ``invalid_input``: a field's value is not acceptable."""


class InvalidQuery(BadRequest):
    """400 ``invalid_query``: an unknown, repeated or bad query parameter."""


class Unauthorized(MissionBusError):
    """401: no token, or a token nobody owns."""


class Forbidden(MissionBusError):
    """403: the token may not do this."""


class PermissionDenied(Forbidden):
    """403 ``permission_denied``: the role lacks the capability."""


class WrongMission(Forbidden):
    """403 ``wrong_mission``: a participant token of another mission."""


class SenderMismatch(Forbidden):
    """403 ``sender_mismatch``: a forged ``sender``."""


class AdminOnly(Forbidden):
    """403 ``admin_only``: needs the admin token."""


class ParticipantOnly(Forbidden):
    """403 ``participant_only``: the admin is nobody's sender."""


class NotAParticipant(Forbidden):
    """403 ``not_a_participant``: the named sender is not (or no longer) in
    the mission."""


class LeadOnly(Forbidden):
    """403 ``lead_only``: only the admin or the mission's lead may do this."""


class NotFound(MissionBusError):
    """404: unknown mission, participant, checkpoint, handoff or endpoint."""


class MissionNotFound(NotFound):
    """404 ``mission_not_found``."""


class ParticipantNotFound(NotFound):
    """404 ``participant_not_found``."""


class CheckpointNotFound(NotFound):
    """404 ``checkpoint_not_found``."""


class HandoffNotFound(NotFound):
    """404 ``handoff_not_found``."""


class EventNotFound(NotFound):
    """404 ``event_not_found``: a sequence past the head."""


class Conflict(MissionBusError):
    """409: something already exists, or the head moved."""


class MissionExists(Conflict):
    """409 ``mission_exists``."""


class ParticipantExists(Conflict):
    """409 ``participant_exists``."""


class SequenceConflict(Conflict):
    """409 ``sequence_conflict``: the head is not ``expected_sequence``."""


class EventIdConflict(Conflict):
    """409 ``event_id_conflict``: the event id was stored with other content."""


class LifecycleConflict(Conflict):
    """409 ``conflict``: a handoff step its status does not allow (accepting
    twice, a heartbeat or completion after the lease lapsed, ...)."""


class TooLarge(MissionBusError):
    """413: the body or a field is over the limit."""


class ServerError(MissionBusError):
    """5xx: storage failure or damaged data (``corruption``)."""


class Corruption(ServerError):
    """500 ``corruption``: stored bytes failed a check."""


class StoreDamaged(ServerError):
    """500 ``store_damaged``: sled refused its data file or the commit
    ledger is damaged (``mission-bus salvage``)."""


class AcknowledgedEventsMissing(ServerError):
    """500 ``acknowledged_events_missing``: the mission refuses writes until
    ``mission-bus salvage`` or ``accept-loss``."""


class Unavailable(ServerError):
    """503 ``unavailable``: the store is closing (retried by the client)."""


class TooManyStreams(ServerError):
    """503 ``too_many_streams``: an event-stream limit is reached."""


_BY_CODE: dict[str, type[MissionBusError]] = {
    "invalid_input": InvalidInput,
    "invalid_query": InvalidQuery,
    "permission_denied": PermissionDenied,
    "wrong_mission": WrongMission,
    "sender_mismatch": SenderMismatch,
    "admin_only": AdminOnly,
    "participant_only": ParticipantOnly,
    "not_a_participant": NotAParticipant,
    "lead_only": LeadOnly,
    "mission_not_found": MissionNotFound,
    "participant_not_found": ParticipantNotFound,
    "checkpoint_not_found": CheckpointNotFound,
    "handoff_not_found": HandoffNotFound,
    "event_not_found": EventNotFound,
    "mission_exists": MissionExists,
    "participant_exists": ParticipantExists,
    "sequence_conflict": SequenceConflict,
    "event_id_conflict": EventIdConflict,
    "conflict": LifecycleConflict,
    "corruption": Corruption,
    "store_damaged": StoreDamaged,
    "acknowledged_events_missing": AcknowledgedEventsMissing,
    "unavailable": Unavailable,
    "too_many_streams": TooManyStreams,
}

_BY_STATUS: dict[int, type[MissionBusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
}


def error_from_body(status: int, body: Any) -> MissionBusError:
    """The exception for an error response's status and parsed JSON body."""
    code, message = "unknown", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", "unknown"))
        message = str(body["error"].get("message", ""))
    elif body is not None:
        message = str(body)[:500]
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else MissionBusError
    return cls(status, code, message)
