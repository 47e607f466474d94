"""mission-bus client: talk to a ``mission-bus serve`` over HTTP.

>>> from mission_bus import Client
>>> bus = Client("http://127.0.0.1:7411", token)
>>> bus.publish("mission-883", "status", {"step": 1}).sequence

:class:`Client` is synchronous, :class:`AsyncClient` its asyncio twin; both
return the dataclasses of :mod:`mission_bus.types` and raise the
exceptions of :mod:`mission_bus.errors`. The LangGraph checkpointer is
:class:`mission_bus.langgraph.MissionBusSaver`.
"""

from ._requests import checkpoint_item, handoff_item, message_item
from .aclient import AsyncClient, AsyncEventStream
from .client import Client, EventStream
from .errors import (
    AcknowledgedEventsMissing,
    AdminOnly,
    BadRequest,
    CheckpointNotFound,
    Conflict,
    ConnectionFailed,
    Corruption,
    EventIdConflict,
    EventNotFound,
    Forbidden,
    HandoffNotFound,
    InvalidInput,
    InvalidQuery,
    LeadOnly,
    LifecycleConflict,
    MissionBusError,
    MissionExists,
    MissionNotFound,
    NotAParticipant,
    NotFound,
    ParticipantExists,
    ParticipantNotFound,
    ParticipantOnly,
    PermissionDenied,
    SenderMismatch,
    SequenceConflict,
    ServerError,
    StoreDamaged,
    TooLarge,
    TooManyStreams,
    Unauthorized,
    Unavailable,
    WrongMission,
)
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
    Problem,
    ResumePacket,
    TokenIssued,
    VerifyReport,
)

__version__ = "0.1.0"

__all__ = [
    "AcknowledgedEventsMissing", "AdminOnly", "AsyncClient",
    "CheckpointsPage", "ConsumerPosition", "HandoffInfo", "HandoffStep", "InvalidQuery",
    "LeadOnly", "LifecycleConflict", "NotAParticipant", "StoreDamaged", "AsyncEventStream", "BadRequest", "BatchResult",
    "CheckpointNotFound", "Client", "Conflict", "ConnectionFailed", "Corruption",
    "Event", "EventIdConflict", "EventNotFound", "EventRecord", "EventStream", "EventsPage", "Forbidden",
    "HandoffNotFound", "InvalidInput", "MissionBusError", "MissionCreated",
    "MissionExists", "MissionList", "MissionNotFound", "MissionSummary", "NotFound", "ParticipantAdded",
    "ParticipantExists", "ParticipantNotFound", "ParticipantOnly", "PermissionDenied",
    "Problem", "ResumePacket", "SenderMismatch", "SequenceConflict", "ServerError",
    "TokenIssued", "TooLarge", "TooManyStreams", "Unauthorized", "Unavailable",
    "VerifyReport", "WrongMission", "checkpoint_item", "handoff_item", "message_item",
]
