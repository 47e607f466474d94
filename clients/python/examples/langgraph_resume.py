"""A LangGraph graph killed mid-run resumes from mission-bus in a new process.

    python langgraph_resume.py --url http://127.0.0.1:7411 --token "$(cat bus-data/admin.token)"

(or set MISSION_BUS_URL and MISSION_BUS_ADMIN_TOKEN). It runs a four-step
graph in a child process with MissionBusSaver as its checkpointer, SIGKILLs
that process while step 3 runs, then starts a new process that resumes the
same thread: steps 1 and 2 are not run again, step 3 is, and the result is
printed as JSON (the last line of output).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import signal
import subprocess
import sys
import threading
import uuid
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

from mission_bus.langgraph import MissionBusSaver

STEPS = ["step1", "step2", "step3", "step4"]


class State(TypedDict):
    done: Annotated[list[str], operator.add]


def build(saver: MissionBusSaver, crash_at: str | None):
    g = StateGraph(State)

    def node(name: str):
        def run(state: State) -> dict:
            if name == crash_at:
                # Tell the parent we are mid-run, then wait to be killed.
                print(f"running {name}", flush=True)
                threading.Event().wait()
            return {"done": [f"{name}@{os.getpid()}"]}
        return run

    prev = START
    for name in STEPS:
        g.add_node(name, node(name))
        g.add_edge(prev, name)
        prev = name
    g.add_edge(prev, END)
    return g.compile(checkpointer=saver)


def worker(url: str, token: str, thread: str, crash_at: str | None) -> None:
    saver = MissionBusSaver(url, token)
    graph = build(saver, crash_at)
    config = {"configurable": {"thread_id": thread}}
    snapshot = graph.get_state(config)
    if snapshot.next:  # a run was interrupted: go on from its last checkpoint
        print(f"resuming before {list(snapshot.next)}", flush=True)
        result = graph.invoke(None, config, durability="sync")
    else:
        # durability="sync": each step's checkpoint is stored before the
        # next step starts, so a kill loses at most the running step.
        result = graph.invoke({"done": []}, config, durability="sync")
    print(json.dumps({"pid": os.getpid(), "done": result["done"]}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("MISSION_BUS_URL", "http://127.0.0.1:7411"))
    p.add_argument("--token", default=os.environ.get("MISSION_BUS_ADMIN_TOKEN"))
    p.add_argument("--thread", default=f"resume-demo-{uuid.uuid4().hex[:8]}")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--crash-at", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if not a.token:
        p.error("--token (or MISSION_BUS_ADMIN_TOKEN) is required: the admin token")
    if a.worker:
        worker(a.url, a.token, a.thread, a.crash_at)
        return 0

    cmd = [sys.executable, __file__, "--worker", "--url", a.url, "--token", a.token,
           "--thread", a.thread]
    first = subprocess.Popen(cmd + ["--crash-at", "step3"], stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None
    line = first.stdout.readline().strip()
    if line != "running step3":
        first.kill()
        print(f"first run did not reach step3: {line!r}", file=sys.stderr)
        return 1
    first.send_signal(signal.SIGKILL)
    first.wait()
    print(f"killed pid {first.pid} with SIGKILL during step3 (exit {first.returncode})",
          flush=True)
    second = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    sys.stdout.write(second.stdout)
    result = json.loads(second.stdout.strip().splitlines()[-1])
    print(json.dumps({"thread": a.thread, "killed_pid": first.pid, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
