"""A LangGraph checkpointer that keeps threads in mission-bus.

``MissionBusSaver(url, admin_token)`` is a ``BaseCheckpointSaver`` with sync
and async methods (``get_tuple``/``list``/``put``/``put_writes``/
``delete_thread`` and their ``a*`` twins). Each thread is one mission,
created on first use; checkpoints are checkpoint events, pending writes
are message events (see :mod:`mission_bus._lgstate` for the layout).
Values are serialized with the saver's ``serde`` (LangGraph's
``JsonPlusSerializer`` by default).

The admin token creates the missions and reads them; the saver writes as
a participant of each mission (the lead ``langgraph`` when it created the
mission, else a ``write`` participant ``saver-XXXXXXXX`` it adds for
itself), since the admin is nobody's sender.

``copy_thread`` copies on the client: it reads the source thread and
writes every checkpoint and pending write again into the target's mission
(O(history) writes; no server-side fork exists yet).
``list(None, ...)`` lists every thread's checkpoints (the ``lg-`` missions
of ``GET /v1/missions``), thread by thread.

Deletion is logical, because the log is append-only: ``delete_thread``
writes a ``langgraph.delete_thread`` message after which the saver sees an
empty thread; ``prune`` (``keep_latest``: each namespace's latest
checkpoint stays; ``delete``: none) and ``delete_for_runs`` (the
checkpoints whose metadata ``run_id`` is given, in every thread) write
``langgraph.forget`` messages naming the checkpoints the saver then no
longer sees, with their pending writes. The log keeps the bytes until the
server's retention (issue 13) removes them.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)

from ._lgstate import (
    FORGET_CHUNK,
    TOPIC_BLOB,
    TOPIC_DELETE,
    TOPIC_FORGET,
    TOPIC_WRITES,
    ThreadView,
    checkpoint_event_id,
    mission_for_thread,
    split_refs,
)
from .aclient import AsyncClient
from .client import Client
from .errors import EventIdConflict, MissionExists, MissionNotFound, ParticipantExists

LEAD = "langgraph"
TITLE_MAX = 1000


class MissionBusSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpointer on a mission-bus server: one mission per thread.

    ``MissionBusSaver(url, token)`` with the server's admin token.
    """

    def __init__(self, url: str, token: str, *, serde: Any = None,
                 timeout: float = 30.0) -> None:
        super().__init__(serde=serde)
        self.url = url
        self._admin_token = token
        self._transport = httpx.HTTPTransport()
        self._atransport = httpx.AsyncHTTPTransport()
        self._admin = Client(url, token, timeout=timeout, transport=self._transport)
        self._aadmin = AsyncClient(url, token, timeout=timeout, transport=self._atransport)
        self._timeout = timeout
        self._me = f"saver-{uuid.uuid4().hex[:8]}"
        self._views: dict[str, ThreadView] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.RLock()
        self._ensure_lock = threading.Lock()
        self._aensure_lock: asyncio.Lock | None = None

    # -- plumbing ------------------------------------------------------------

    def close(self) -> None:
        """Close the sync connection pool."""
        self._transport.close()

    async def aclose(self) -> None:
        """Close both connection pools."""
        self._transport.close()
        await self._atransport.aclose()

    def __enter__(self) -> "MissionBusSaver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _view(self, mission: str) -> ThreadView:
        with self._lock:
            return self._views.setdefault(mission, ThreadView())

    def _writer(self, mission: str) -> Client:
        return Client(self.url, self._tokens[mission], timeout=self._timeout,
                      transport=self._transport)

    def _awriter(self, mission: str) -> AsyncClient:
        return AsyncClient(self.url, self._tokens[mission], timeout=self._timeout,
                           transport=self._atransport)

    @staticmethod
    def _create_args(thread_id: str) -> tuple[str, str]:
        title = f"LangGraph thread {thread_id}"
        return mission_for_thread(thread_id), title[:TITLE_MAX]

    def _ensure(self, thread_id: str) -> str:
        """The thread's mission, created if needed, with a token to write.

        One at a time: LangGraph writes from several threads at once, and two
        tokens issued for one name would revoke each other."""
        mission, title = self._create_args(thread_id)
        if mission in self._tokens:
            return mission
        with self._ensure_lock:
            if mission in self._tokens:
                return mission
            return self._ensure_locked(thread_id, mission, title)

    def _ensure_locked(self, thread_id: str, mission: str, title: str) -> str:
        meta = {"langgraph_thread_id": str(thread_id)}
        try:
            created = self._admin.create_mission(mission, title, LEAD)
            token = created.lead_token
            self._admin.add_participant(mission, "thread", "read", metadata=meta)
        except MissionExists:
            try:
                token = self._admin.add_participant(mission, self._me, "write").token
            except ParticipantExists:
                token = self._admin.reissue_token(mission, self._me).token
        with self._lock:
            self._tokens[mission] = token
        return mission

    async def _aensure(self, thread_id: str) -> str:
        mission, title = self._create_args(thread_id)
        if mission in self._tokens:
            return mission
        if self._aensure_lock is None:
            self._aensure_lock = asyncio.Lock()
        async with self._aensure_lock:
            if mission in self._tokens:
                return mission
            return await self._aensure_locked(thread_id, mission, title)

    async def _aensure_locked(self, thread_id: str, mission: str, title: str) -> str:
        meta = {"langgraph_thread_id": str(thread_id)}
        try:
            created = await self._aadmin.create_mission(mission, title, LEAD)
            token = created.lead_token
            await self._aadmin.add_participant(mission, "thread", "read", metadata=meta)
        except MissionExists:
            try:
                token = (await self._aadmin.add_participant(mission, self._me, "write")).token
            except ParticipantExists:
                token = (await self._aadmin.reissue_token(mission, self._me)).token
        with self._lock:
            self._tokens[mission] = token
        return mission

    def _refresh(self, thread_id: str) -> ThreadView | None:
        """The thread's view, caught up with the log; None if no mission."""
        return self._refresh_mission(mission_for_thread(thread_id))

    def _refresh_mission(self, mission: str) -> ThreadView | None:
        view = self._view(mission)
        try:
            while True:
                page = self._admin.events(mission, view.next_from, 1000)
                if not page.events:
                    return view
                with self._lock:
                    for ev in page.events:
                        if ev.sequence >= view.next_from:
                            view.apply(ev)
        except MissionNotFound:
            return None

    async def _arefresh(self, thread_id: str) -> ThreadView | None:
        return await self._arefresh_mission(mission_for_thread(thread_id))

    async def _arefresh_mission(self, mission: str) -> ThreadView | None:
        view = self._view(mission)
        try:
            while True:
                page = await self._aadmin.events(mission, view.next_from, 1000)
                if not page.events:
                    return view
                with self._lock:
                    for ev in page.events:
                        if ev.sequence >= view.next_from:
                            view.apply(ev)
        except MissionNotFound:
            return None

    # -- building what is written ------------------------------------------

    @staticmethod
    def _refs(typed_values: list[tuple[str, bytes]]) -> tuple[list[dict], list[list[str]]]:
        return split_refs(typed_values)

    def _checkpoint_plan(self, config: RunnableConfig, checkpoint: Checkpoint,
                         metadata: CheckpointMetadata, new_versions: ChannelVersions):
        conf = config["configurable"]
        thread_id = conf["thread_id"]
        ns = conf.get("checkpoint_ns", "")
        c = checkpoint.copy()
        values = c.pop("channel_values", {})  # type: ignore[misc]
        blob_keys = list(new_versions.items())
        typed = [self.serde.dumps_typed(c),
                 self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))]
        for ch, _ver in blob_keys:
            typed.append(self.serde.dumps_typed(values[ch]) if ch in values else ("empty", b""))
        refs, pieces = self._refs(typed)
        state = {
            "langgraph": 1,
            "thread_id": str(thread_id),
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": conf.get("checkpoint_id"),
            "checkpoint": refs[0],
            "metadata": refs[1],
            "blobs": [[ch, str(ver), ref] for (ch, ver), ref in zip(blob_keys, refs[2:])],
        }
        summary = f"langgraph checkpoint {checkpoint['id']} ns={ns[:200]!r}"
        out = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                "checkpoint_id": checkpoint["id"]}}
        return thread_id, ns, state, refs, pieces, summary, out

    def _writes_plan(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                     task_id: str, task_path: str):
        conf = config["configurable"]
        idxs = [WRITES_IDX_MAP.get(ch, i) for i, (ch, _v) in enumerate(writes)]
        refs, pieces = self._refs([self.serde.dumps_typed(v) for _c, v in writes])
        payload = {
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
            "checkpoint_id": conf["checkpoint_id"],
            "task_id": task_id,
            "task_path": task_path,
            "writes": [[idx, ch, ref] for idx, (ch, _v), ref in zip(idxs, writes, refs)],
        }
        return conf["thread_id"], payload, refs, pieces

    # -- reading ---------------------------------------------------------------

    def _tuple(self, view: ThreadView, ns: str, cid: str) -> CheckpointTuple:
        st = view.checkpoints[(ns, cid)]
        tid = st["thread_id"]
        cp = self.serde.loads_typed(view.typed(st["checkpoint"]))
        values = {}
        for ch, ver in cp.get("channel_versions", {}).items():
            ref = view.blobs.get((ns, ch, str(ver)))
            if ref is not None and ref["t"] != "empty":
                values[ch] = self.serde.loads_typed(view.typed(ref))
        cp["channel_values"] = values
        parent = st.get("parent_checkpoint_id")
        return CheckpointTuple(
            config={"configurable": {"thread_id": tid, "checkpoint_ns": ns,
                                     "checkpoint_id": cid}},
            checkpoint=cp,
            metadata=self.serde.loads_typed(view.typed(st["metadata"])),
            parent_config=({"configurable": {"thread_id": tid, "checkpoint_ns": ns,
                                             "checkpoint_id": parent}} if parent else None),
            pending_writes=[(t, ch, self.serde.loads_typed(view.typed(ref)))
                            for t, ch, ref, _p in view.ordered_writes(ns, cid)],
        )

    def _get(self, view: ThreadView | None, config: RunnableConfig) -> CheckpointTuple | None:
        if view is None:
            return None
        ns = config["configurable"].get("checkpoint_ns", "")
        with self._lock:
            cid = get_checkpoint_id(config) or view.latest(ns)
            if cid is None or (ns, cid) not in view.checkpoints:
                return None
            return self._tuple(view, ns, cid)

    def _select(self, view: ThreadView | None, config: RunnableConfig,
                filter: dict[str, Any] | None, before: RunnableConfig | None,
                limit: int | None) -> list[CheckpointTuple]:
        if view is None:
            return []
        conf = config["configurable"]
        want_ns = conf.get("checkpoint_ns")
        want_id = get_checkpoint_id(config)
        before_id = get_checkpoint_id(before) if before else None
        out: list[CheckpointTuple] = []
        with self._lock:
            keys = sorted(view.checkpoints, key=lambda k: k[1], reverse=True)
            for ns, cid in keys:
                if want_ns is not None and ns != want_ns:
                    continue
                if want_id and cid != want_id:
                    continue
                if before_id and cid >= before_id:
                    continue
                tup = self._tuple(view, ns, cid)
                if filter and not all(tup.metadata.get(k) == v for k, v in filter.items()):
                    continue
                out.append(tup)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _copy_plan(self, view: ThreadView | None, target: str) -> list[tuple]:
        """What copying ``view``'s thread to ``target`` writes, in log order:
        every checkpoint (with its own channel values) and every pending
        write, re-serialized into the target's mission."""
        if view is None:
            return []
        ops: list[tuple] = []
        with self._lock:
            for (ns, cid), st in view.checkpoints.items():
                typed = [view.typed(st["checkpoint"]), view.typed(st["metadata"])]
                typed += [view.typed(ref) for _ch, _ver, ref in st.get("blobs", [])]
                refs, pieces = self._refs(typed)
                state = dict(st, thread_id=str(target), checkpoint=refs[0], metadata=refs[1],
                             blobs=[[ch, ver, ref] for (ch, ver, _r), ref
                                    in zip(st.get("blobs", []), refs[2:])])
                ops.append(("checkpoint", ns, cid, state, refs, pieces))
            for (ns, cid), stored in view.writes.items():
                by_task: dict[tuple[str, str], list] = {}
                for (task_id, idx), (_t, ch, ref, path) in stored.items():
                    by_task.setdefault((task_id, path), []).append((idx, ch, view.typed(ref)))
                for (task_id, path), ws in by_task.items():
                    refs, pieces = self._refs([tv for _i, _c, tv in ws])
                    payload = {"checkpoint_ns": ns, "checkpoint_id": cid, "task_id": task_id,
                               "task_path": path,
                               "writes": [[i, c, r] for (i, c, _tv), r in zip(ws, refs)]}
                    ops.append(("writes", ns, cid, payload, refs, pieces))
        return ops

    @staticmethod
    def _thread_of(config: RunnableConfig | None) -> str | None:
        if not config or "thread_id" not in config.get("configurable", {}):
            return None
        return config["configurable"]["thread_id"]

    def _thread_missions(self, missions: Any) -> list[str]:
        return [m.mission_id for m in missions.missions
                if m.mission_id.startswith("lg-") and m.error is None]

    def _runs_plan(self, view: ThreadView | None,
                   run_ids: set[str]) -> tuple[str | None, list[list[str]]]:
        """The thread id and the ``[ns, checkpoint_id]`` pairs of ``view``
        whose metadata ``run_id`` is one of ``run_ids``."""
        if view is None:
            return None, []
        thread, out = None, []
        with self._lock:
            for (ns, cid), st in sorted(view.checkpoints.items()):
                meta = self.serde.loads_typed(view.typed(st["metadata"]))
                if isinstance(meta, dict) and str(meta.get("run_id")) in run_ids:
                    thread = st["thread_id"]
                    out.append([ns, cid])
        return thread, out

    @staticmethod
    def _chunks(keys: list[list[str]]) -> list[dict[str, Any]]:
        return [{"checkpoints": keys[i:i + FORGET_CHUNK]}
                for i in range(0, len(keys), FORGET_CHUNK)]

    def _prune_keys(self, view: ThreadView | None, strategy: str) -> list[list[str]]:
        if view is None:
            return []
        with self._lock:
            return view.prune_keys(strategy)

    # -- sync API --------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's latest)."""
        return self._get(self._refresh(config["configurable"]["thread_id"]), config)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None,
             limit: int | None = None) -> Iterator[CheckpointTuple]:
        """A thread's checkpoints, newest first; every thread's with no
        ``thread_id`` in ``config`` (each thread newest first)."""
        thread = self._thread_of(config)
        if thread is not None:
            yield from self._select(self._refresh(thread), config, filter, before, limit)  # type: ignore[arg-type]
            return
        left = limit
        for mission in self._thread_missions(self._admin.list_missions()):
            got = self._select(self._refresh_mission(mission), config or {"configurable": {}},
                               filter, before, left)
            yield from got
            if left is not None:
                left -= len(got)
                if left <= 0:
                    return

    def put(self, config: RunnableConfig, checkpoint: Checkpoint,
            metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        """Store a checkpoint as a checkpoint event."""
        thread_id, ns, state, refs, pieces, summary, out = self._checkpoint_plan(
            config, checkpoint, metadata, new_versions)
        mission = self._ensure(thread_id)
        w = self._writer(mission)
        for ref, ps in zip(refs, pieces):
            for piece in ps:
                ref["parts"].append(w.publish(mission, TOPIC_BLOB, {"data": piece}).id)
        eid = checkpoint_event_id(mission, ns, checkpoint["id"])
        try:
            w.checkpoint(mission, summary, state, event_id=eid)
        except EventIdConflict:  # the same checkpoint id stored again, changed
            w.checkpoint(mission, summary, state)
        return out

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        """Store a task's pending writes as one message event."""
        thread_id, payload, refs, pieces = self._writes_plan(config, writes, task_id, task_path)
        mission = self._ensure(thread_id)
        w = self._writer(mission)
        for ref, ps in zip(refs, pieces):
            for piece in ps:
                ref["parts"].append(w.publish(mission, TOPIC_BLOB, {"data": piece}).id)
        w.publish(mission, TOPIC_WRITES, payload)

    def delete_thread(self, thread_id: str) -> None:
        """Forget a thread (logically: see the module's notes)."""
        if self._refresh(thread_id) is None:
            return
        mission = self._ensure(thread_id)
        self._writer(mission).publish(mission, TOPIC_DELETE, {"thread_id": str(thread_id)})

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and pending write of a thread to another
        (client-side: read from one mission, written to the other's)."""
        ops = self._copy_plan(self._refresh(source_thread_id), target_thread_id)
        if not ops:
            return
        mission = self._ensure(target_thread_id)
        w = self._writer(mission)
        for kind, ns, cid, body, refs, pieces in ops:
            for ref, ps in zip(refs, pieces):
                for piece in ps:
                    ref["parts"].append(w.publish(mission, TOPIC_BLOB, {"data": piece}).id)
            if kind == "checkpoint":
                w.checkpoint(mission, f"langgraph checkpoint {cid} (copied)", body,
                             event_id=checkpoint_event_id(mission, ns, cid))
            else:
                w.publish(mission, TOPIC_WRITES, body)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only each namespace's latest checkpoint (``keep_latest``) or
        none (``delete``) of each thread (logically: see the module's notes)."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r} (keep_latest or delete)")
        for tid in thread_ids:
            keys = self._prune_keys(self._refresh(tid), strategy)
            if not keys:
                continue
            mission = self._ensure(tid)
            w = self._writer(mission)
            for body in self._chunks(keys):
                w.publish(mission, TOPIC_FORGET, body)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Forget every checkpoint (and its pending writes) whose metadata
        ``run_id`` is one of ``run_ids``, in every thread (logically)."""
        wanted = {str(r) for r in run_ids}
        if not wanted:
            return
        for mission in self._thread_missions(self._admin.list_missions()):
            thread, keys = self._runs_plan(self._refresh_mission(mission), wanted)
            if thread is None or not keys:
                continue
            target = self._ensure(thread)
            w = self._writer(target)
            for body in self._chunks(keys):
                w.publish(target, TOPIC_FORGET, body)

    # -- async API -------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async :meth:`get_tuple`."""
        return self._get(await self._arefresh(config["configurable"]["thread_id"]), config)

    async def alist(self, config: RunnableConfig | None, *,
                    filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None,
                    limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list`."""
        thread = self._thread_of(config)
        if thread is not None:
            for tup in self._select(await self._arefresh(thread), config,  # type: ignore[arg-type]
                                    filter, before, limit):
                yield tup
            return
        left = limit
        for mission in self._thread_missions(await self._aadmin.list_missions()):
            got = self._select(await self._arefresh_mission(mission),
                               config or {"configurable": {}}, filter, before, left)
            for tup in got:
                yield tup
            if left is not None:
                left -= len(got)
                if left <= 0:
                    return

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        """Async :meth:`put`."""
        thread_id, ns, state, refs, pieces, summary, out = self._checkpoint_plan(
            config, checkpoint, metadata, new_versions)
        mission = await self._aensure(thread_id)
        w = self._awriter(mission)
        for ref, ps in zip(refs, pieces):
            for piece in ps:
                ref["parts"].append((await w.publish(mission, TOPIC_BLOB, {"data": piece})).id)
        eid = checkpoint_event_id(mission, ns, checkpoint["id"])
        try:
            await w.checkpoint(mission, summary, state, event_id=eid)
        except EventIdConflict:
            await w.checkpoint(mission, summary, state)
        return out

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        """Async :meth:`put_writes`."""
        thread_id, payload, refs, pieces = self._writes_plan(config, writes, task_id, task_path)
        mission = await self._aensure(thread_id)
        w = self._awriter(mission)
        for ref, ps in zip(refs, pieces):
            for piece in ps:
                ref["parts"].append((await w.publish(mission, TOPIC_BLOB, {"data": piece})).id)
        await w.publish(mission, TOPIC_WRITES, payload)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread`."""
        if await self._arefresh(thread_id) is None:
            return
        mission = await self._aensure(thread_id)
        await self._awriter(mission).publish(mission, TOPIC_DELETE,
                                             {"thread_id": str(thread_id)})

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async :meth:`copy_thread`."""
        ops = self._copy_plan(await self._arefresh(source_thread_id), target_thread_id)
        if not ops:
            return
        mission = await self._aensure(target_thread_id)
        w = self._awriter(mission)
        for kind, ns, cid, body, refs, pieces in ops:
            for ref, ps in zip(refs, pieces):
                for piece in ps:
                    ref["parts"].append(
                        (await w.publish(mission, TOPIC_BLOB, {"data": piece})).id)
            if kind == "checkpoint":
                await w.checkpoint(mission, f"langgraph checkpoint {cid} (copied)", body,
                                   event_id=checkpoint_event_id(mission, ns, cid))
            else:
                await w.publish(mission, TOPIC_WRITES, body)

    async def aprune(self, thread_ids: Sequence[str], *,
                     strategy: str = "keep_latest") -> None:
        """Async :meth:`prune`."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r} (keep_latest or delete)")
        for tid in thread_ids:
            keys = self._prune_keys(await self._arefresh(tid), strategy)
            if not keys:
                continue
            mission = await self._aensure(tid)
            w = self._awriter(mission)
            for body in self._chunks(keys):
                await w.publish(mission, TOPIC_FORGET, body)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async :meth:`delete_for_runs`."""
        wanted = {str(r) for r in run_ids}
        if not wanted:
            return
        for mission in self._thread_missions(await self._aadmin.list_missions()):
            thread, keys = self._runs_plan(await self._arefresh_mission(mission), wanted)
            if thread is None or not keys:
                continue
            target = await self._aensure(thread)
            w = self._awriter(target)
            for body in self._chunks(keys):
                await w.publish(target, TOPIC_FORGET, body)
