"""MissionBusSaver beyond the conformance suite: the thread-to-mission
mapping, the sync API, values too large for one event, several savers
(processes) on one thread, a real graph, and the SIGKILL/resume example."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Annotated, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.checkpoint.base.id import uuid6  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402

from mbserver import child_env  # noqa: E402

from mission_bus import Client  # noqa: E402
from mission_bus._lgstate import mission_for_thread  # noqa: E402
from mission_bus.langgraph import MissionBusSaver  # noqa: E402

class Log(TypedDict):
    log: Annotated[list[str], operator.add]


class Counter(TypedDict):
    n: int


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "langgraph_resume.py"


def cp(values: dict, versions: dict | None = None) -> dict:
    c = empty_checkpoint()
    c["id"] = str(uuid6(clock_seq=-1))
    c["channel_values"] = values
    c["channel_versions"] = versions or {k: 1 for k in values}
    return c


def config(thread: str, checkpoint_id: str | None = None, ns: str = "") -> dict:
    c = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
    if checkpoint_id:
        c["configurable"]["checkpoint_id"] = checkpoint_id
    return c


def test_thread_is_one_mission_named_by_its_hash(server, admin):
    thread = "user 42 / chat: ünïcode & spaces " + "x" * 300
    saver = MissionBusSaver(server.url, server.admin_token)
    c = cp({"k": "v"})
    saver.put(config(thread), c, {"source": "input", "step": -1}, {"k": 1})
    mission = mission_for_thread(thread)
    assert mission.startswith("lg-") and len(mission) == 43
    events = list(admin.iter_events(mission))
    assert events[0].event_type == "mission_created"
    assert thread in events[0].raw["title"]
    joined = [e.raw for e in events if e.event_type == "participant_joined"]
    assert {"participant": "thread", "role": "read"}.items() <= joined[-1].items()
    assert joined[-1]["metadata"] == {"langgraph_thread_id": thread}
    ck = [e for e in events if e.event_type == "checkpoint"]
    assert len(ck) == 1 and ck[0].state["checkpoint_id"] == c["id"]
    assert ck[0].state["thread_id"] == thread
    assert admin.verify(mission).intact


def test_sync_api_round_trip_and_delete(server):
    saver = MissionBusSaver(server.url, server.admin_token)
    t = f"t-{uuid.uuid4()}"
    assert saver.get_tuple(config(t)) is None
    assert list(saver.list(config(t))) == []
    c1 = cp({"a": [1, 2, 3]})
    s1 = saver.put(config(t), c1, {"source": "input", "step": 0}, {"a": 1})
    saver.put_writes(s1, [("a", {"x": 1}), ("b", "y")], "task-1", "p")
    c2 = cp({"a": [4]}, {"a": 2})
    s2 = saver.put(s1, c2, {"source": "loop", "step": 1}, {"a": 2})
    got = saver.get_tuple(config(t))
    assert got.checkpoint["id"] == c2["id"] and got.checkpoint["channel_values"] == {"a": [4]}
    assert got.parent_config["configurable"]["checkpoint_id"] == c1["id"]
    old = saver.get_tuple(s1)
    assert old.pending_writes == [("task-1", "a", {"x": 1}), ("task-1", "b", "y")]
    assert [x.checkpoint["id"] for x in saver.list(config(t))] == [c2["id"], c1["id"]]
    assert [x.metadata["step"] for x in saver.list(config(t), filter={"source": "loop"})] == [1]
    saver.delete_thread(t)
    assert saver.get_tuple(config(t)) is None and list(saver.list(config(t))) == []
    # A new saver (another process) sees the same: the deletion is in the log.
    assert MissionBusSaver(server.url, server.admin_token).get_tuple(config(t)) is None
    saver.put(config(t), cp({"z": 1}), {"step": 5}, {"z": 1})
    assert saver.get_tuple(config(t)).metadata["step"] == 5
    assert s2["configurable"]["checkpoint_id"] == c2["id"]


def test_values_larger_than_one_event_round_trip(server):
    saver = MissionBusSaver(server.url, server.admin_token)
    t = f"big-{uuid.uuid4()}"
    big = os.urandom(150_000).hex()  # 300 kB of text: several events' worth
    c = cp({"doc": big, "small": 1})
    s = saver.put(config(t), c, {"step": 0}, {"doc": 1, "small": 1})
    saver.put_writes(s, [("doc", big[:100_000])], "task")
    other = MissionBusSaver(server.url, server.admin_token)
    got = other.get_tuple(config(t))
    assert got.checkpoint["channel_values"] == {"doc": big, "small": 1}
    assert got.pending_writes == [("task", "doc", big[:100_000])]
    # Copied to another thread (mission), the pieces are written there too.
    other.copy_thread(t, t + "-copy")
    copied = MissionBusSaver(server.url, server.admin_token).get_tuple(config(t + "-copy"))
    assert copied.checkpoint["channel_values"] == {"doc": big, "small": 1}
    assert copied.pending_writes == got.pending_writes
    assert copied.config["configurable"]["thread_id"] == t + "-copy"


def test_two_savers_share_a_thread(server, admin):
    t = f"shared-{uuid.uuid4()}"
    a = MissionBusSaver(server.url, server.admin_token)
    b = MissionBusSaver(server.url, server.admin_token)
    s1 = a.put(config(t), cp({"n": 1}), {"step": 0}, {"n": 1})
    c2 = cp({"n": 2}, {"n": 2})
    b.put(s1, c2, {"step": 1}, {"n": 2})  # b joins the mission as its own participant
    assert a.get_tuple(config(t)).checkpoint["id"] == c2["id"]
    senders = {e.sender for e in admin.iter_events(mission_for_thread(t))
               if e.event_type == "checkpoint"}
    assert len(senders) == 2 and "langgraph" in senders


def test_a_graph_runs_and_resumes_state_in_a_new_saver(server):
    def graph(saver):
        g = StateGraph(Log)
        g.add_node("a", lambda s: {"log": ["a"]})
        g.add_node("b", lambda s: {"log": ["b"]})
        g.add_edge(START, "a")
        g.add_edge("a", "b")
        g.add_edge("b", END)
        return g.compile(checkpointer=saver)

    t = {"configurable": {"thread_id": f"g-{uuid.uuid4()}"}}
    out = graph(MissionBusSaver(server.url, server.admin_token)).invoke({"log": ["start"]}, t)
    assert out["log"] == ["start", "a", "b"]
    g2 = graph(MissionBusSaver(server.url, server.admin_token))
    assert g2.get_state(t).values["log"] == ["start", "a", "b"]
    assert g2.invoke({"log": ["again"]}, t)["log"] == ["start", "a", "b", "again", "a", "b"]
    history = list(g2.get_state_history(t))
    assert len(history) >= 6


async def test_a_graph_runs_async(server):
    g = StateGraph(Counter)
    g.add_node("inc", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "inc")
    g.add_edge("inc", END)
    saver = MissionBusSaver(server.url, server.admin_token)
    app = g.compile(checkpointer=saver)
    t = {"configurable": {"thread_id": f"async-{uuid.uuid4()}"}}
    assert (await app.ainvoke({"n": 1}, t))["n"] == 2
    assert (await app.aget_state(t)).values == {"n": 2}
    await saver.aclose()


def test_example_killed_mid_run_resumes_in_a_new_process(server):
    env = child_env(MISSION_BUS_URL=server.url, MISSION_BUS_ADMIN_TOKEN=server.admin_token)
    run = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert any("with SIGKILL during step3 (exit -9)" in l for l in lines), run.stdout
    assert "resuming before ['step3']" in lines, run.stdout
    result = json.loads(lines[-1])
    killed, pid = result["killed_pid"], result["pid"]
    assert killed != pid
    # Steps 1 and 2 ran once, in the killed process; 3 and 4 in the new one.
    assert result["done"] == [f"step1@{killed}", f"step2@{killed}",
                              f"step3@{pid}", f"step4@{pid}"]
    with Client(server.url, server.admin_token) as admin:
        assert admin.verify(mission_for_thread(result["thread"])).intact


async def test_list_without_a_thread_lists_every_thread(server):
    saver = MissionBusSaver(server.url, server.admin_token)
    threads = [f"all-{i}-{uuid.uuid4()}" for i in range(3)]
    for t in threads:
        saver.put(config(t), cp({"k": t}), {"step": 0, "t": t}, {"k": 1})
    with Client(server.url, server.admin_token) as admin:
        admin.create_mission("not-a-thread", "other", "lead")  # ignored: not lg-
    listed = list(saver.list(None))
    assert sorted(x.config["configurable"]["thread_id"] for x in listed) == sorted(threads)
    assert len(list(saver.list(None, limit=2))) == 2
    assert [x.metadata["t"] async for x in saver.alist(None, filter={"t": threads[1]})] == [
        threads[1]]


def test_many_medium_channels_fit_the_event_limits(server):
    # 20 channels of ~7.5 kB base64 each: each alone would be inline, all
    # together are over the server's 64 KiB state limit.
    saver = MissionBusSaver(server.url, server.admin_token)
    t = f"wide-{uuid.uuid4()}"
    values = {f"ch{i}": os.urandom(2800).hex() for i in range(20)}
    s = saver.put(config(t), cp(values), {"step": 0}, {k: 1 for k in values})
    saver.put_writes(s, list(values.items()), "task")
    got = MissionBusSaver(server.url, server.admin_token).get_tuple(config(t))
    assert got.checkpoint["channel_values"] == values
    assert [(c, v) for _t, c, v in got.pending_writes] == list(values.items())


def test_prune_and_delete_for_runs_are_seen_by_other_savers(server, admin):
    """prune and delete_for_runs (sync) write ``langgraph.forget`` messages:
    another saver (process) sees the same pruned threads, and the log
    still holds every checkpoint event (deletion is logical)."""
    one = MissionBusSaver(server.url, server.admin_token)
    t1, t2 = f"p-{uuid.uuid4()}", f"p-{uuid.uuid4()}"
    ids = {}
    for t in (t1, t2):
        ids[t] = []
        for i in range(3):
            c = cp({"n": i})
            one.put(config(t), c, {"source": "loop", "step": i, "run_id": f"run-{t}-{i % 2}"},
                    {"n": i + 1})
            ids[t].append(c["id"])
        one.put_writes(config(t, ids[t][0]), [("n", 99)], "task-1")
    one.prune([t1], strategy="keep_latest")
    two = MissionBusSaver(server.url, server.admin_token)
    assert [x.config["configurable"]["checkpoint_id"] for x in two.list(config(t1))] == [
        ids[t1][2]]
    assert len(list(two.list(config(t2)))) == 3, "other threads untouched"
    assert two.get_tuple(config(t1, ids[t1][0])) is None

    # Runs 0 of t2 are checkpoints 0 and 2; run 1 is checkpoint 1.
    two.delete_for_runs([f"run-{t2}-0"])
    left = [x.config["configurable"]["checkpoint_id"] for x in one.list(config(t2))]
    assert left == [ids[t2][1]]
    with pytest.raises(ValueError):
        one.prune([t2], strategy="sometimes")

    events = list(admin.iter_events(mission_for_thread(t2)))
    assert sum(e.event_type == "checkpoint" for e in events) == 3, "the log keeps the bytes"
    assert [e.topic for e in events if e.topic == "langgraph.forget"] == ["langgraph.forget"]
    one.prune([t2], strategy="delete")
    assert list(two.list(config(t2))) == []
