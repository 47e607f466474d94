"""How :mod:`mission_bus.langgraph` lays a LangGraph thread out in a
mission, and the in-memory view rebuilt from its log. No I/O here.

One mission per thread, id ``lg-`` + the first 40 hex digits of the
SHA-256 of the thread id (any thread id fits the name grammar that way);
the thread id itself is kept in the title and in the lead's metadata.

Events the saver writes (``state`` / ``payload`` are JSON):

- a **checkpoint** event per ``put``: ``state = {"langgraph": 1, thread_id,
  checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint: REF,
  metadata: REF, blobs: [[channel, version, REF], ...]}``: the checkpoint
  without its channel values, and the values of the channels that changed
  (``new_versions``), as LangGraph's own savers store them;
- a **message** ``langgraph.writes`` per ``put_writes``: ``{checkpoint_ns,
  checkpoint_id, task_id, task_path, writes: [[idx, channel, REF], ...]}``;
- a **message** ``langgraph.blob`` per piece of a value too large to be
  inline (``{data}``, at most 48,000 base64 characters);
- a **message** ``langgraph.delete_thread``: everything before it is gone
  for the saver (the log itself is append-only and keeps the bytes);
- a **message** ``langgraph.forget`` (``prune``, ``delete_for_runs``):
  ``{checkpoints: [[checkpoint_ns, checkpoint_id], ...]}``: those
  checkpoints and their pending writes are gone for the saver (again only
  logically: the bytes stay in the log).

``REF`` is a value serialized with the saver's ``serde.dumps_typed``:
``{"t": type, "d": base64}`` inline, or ``{"t": type, "parts": [message
ids of langgraph.blob events]}``.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

TOPIC_WRITES = "langgraph.writes"
TOPIC_BLOB = "langgraph.blob"
TOPIC_DELETE = "langgraph.delete_thread"
TOPIC_FORGET = "langgraph.forget"
#: Checkpoints named per ``langgraph.forget`` message (its payload stays
#: well under the server's 64 KiB).
FORGET_CHUNK = 200
INLINE_MAX = 8000
#: Inline bytes one event may hold in all (the server's limit on a
#: checkpoint's state or a message's payload is 64 KiB of JSON).
INLINE_BUDGET = 40000
PART_SIZE = 48000
_NS = uuid.UUID("5f0f3c1e-8a4b-4c38-9a7e-6d2b1c0a9e11")


def mission_for_thread(thread_id: str) -> str:
    """The mission id of a thread: ``lg-`` + 40 hex digits of SHA-256."""
    return "lg-" + hashlib.sha256(str(thread_id).encode()).hexdigest()[:40]


def checkpoint_event_id(mission_id: str, ns: str, checkpoint_id: str) -> str:
    """A stable event id for one checkpoint, so a resent ``put`` is stored once."""
    return str(uuid.uuid5(_NS, f"{mission_id}\0{ns}\0{checkpoint_id}"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def split_ref(typed: tuple[str, bytes]) -> tuple[dict[str, Any], list[str]]:
    """A REF for ``typed``: inline, or with the base64 pieces that must be
    written first as ``langgraph.blob`` messages (their ids filled in by
    :func:`fill_parts`)."""
    t, data = typed
    enc = b64(data)
    if len(enc) <= INLINE_MAX:
        return {"t": t, "d": enc}, []
    pieces = [enc[i:i + PART_SIZE] for i in range(0, len(enc), PART_SIZE)]
    return {"t": t, "parts": []}, pieces


def split_refs(typed_values: list[tuple[str, bytes]]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """REFs for several values that go into one event: each small one is
    inline while they fit :data:`INLINE_BUDGET` together; the largest move
    out to ``langgraph.blob`` pieces first."""
    refs, pieces = [], []
    for tv in typed_values:
        ref, p = split_ref(tv)
        refs.append(ref)
        pieces.append(p)
    inline = sorted((i for i, r in enumerate(refs) if "d" in r),
                    key=lambda i: len(refs[i]["d"]), reverse=True)
    total = sum(len(refs[i]["d"]) for i in inline)
    for i in inline:
        if total <= INLINE_BUDGET:
            break
        enc = refs[i].pop("d")
        total -= len(enc)
        refs[i]["parts"] = []
        pieces[i] = [enc[k:k + PART_SIZE] for k in range(0, len(enc), PART_SIZE)]
    return refs, pieces


@dataclass
class ThreadView:
    """A thread as the saver sees it, rebuilt from the mission's log."""

    next_from: int = 1
    checkpoints: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    writes: dict[tuple[str, str], dict[tuple[str, int], tuple[str, str, dict, str]]] = field(
        default_factory=dict)
    blobs: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)

    def apply(self, ev: Any) -> None:
        """Fold one log event (a :class:`mission_bus.Event`) in."""
        self.next_from = max(self.next_from, ev.sequence + 1)
        if ev.event_type == "checkpoint":
            st = ev.state
            if not isinstance(st, dict) or st.get("langgraph") != 1:
                return
            ns = st["checkpoint_ns"]
            self.checkpoints[(ns, st["checkpoint_id"])] = st
            for ch, ver, ref in st.get("blobs", []):
                self.blobs[(ns, ch, str(ver))] = ref
        elif ev.event_type == "message":
            p = ev.payload
            if ev.topic == TOPIC_BLOB and isinstance(p, dict):
                self.parts[ev.id] = p["data"]
            elif ev.topic == TOPIC_WRITES and isinstance(p, dict):
                outer = self.writes.setdefault((p["checkpoint_ns"], p["checkpoint_id"]), {})
                for idx, ch, ref in p["writes"]:
                    key = (p["task_id"], int(idx))
                    if key[1] >= 0 and key in outer:
                        continue  # the first write of (task, idx) wins, as in LangGraph
                    outer[key] = (p["task_id"], ch, ref, p.get("task_path", ""))
            elif ev.topic == TOPIC_FORGET and isinstance(p, dict):
                for ns, cid in p.get("checkpoints", []):
                    self.checkpoints.pop((ns, cid), None)
                    self.writes.pop((ns, cid), None)
            elif ev.topic == TOPIC_DELETE:
                nxt = self.next_from
                self.__init__()  # type: ignore[misc]
                self.next_from = nxt

    def typed(self, ref: dict[str, Any]) -> tuple[str, bytes]:
        """The ``(type, bytes)`` a REF stands for."""
        if "d" in ref:
            enc = ref["d"]
        else:
            enc = "".join(self.parts[p] for p in ref["parts"])
        return ref["t"], base64.b64decode(enc)

    def latest(self, ns: str) -> str | None:
        ids = [cid for (n, cid) in self.checkpoints if n == ns]
        return max(ids) if ids else None

    def prune_keys(self, strategy: str) -> list[list[str]]:
        """The ``[ns, checkpoint_id]`` pairs a prune forgets: all of them
        (``"delete"``), or all but each namespace's latest (``"keep_latest"``)."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r} (keep_latest or delete)")
        keep = set()
        if strategy == "keep_latest":
            for ns in {n for n, _c in self.checkpoints}:
                keep.add((ns, self.latest(ns)))
        return [[ns, cid] for (ns, cid) in sorted(self.checkpoints) if (ns, cid) not in keep]

    def ordered_writes(self, ns: str, cid: str) -> list[tuple[str, str, dict, str]]:
        stored = self.writes.get((ns, cid), {})
        return [stored[k] for k in sorted(stored, key=lambda k: (stored[k][3], k[0], k[1]))]
