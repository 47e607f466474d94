"""Run LangGraph's published checkpointer conformance suite
(langgraph-checkpoint-conformance) against MissionBusSaver and print its
report.

    python clients/python/conformance/run_conformance.py

Uses the server at $MISSION_BUS_URL with the admin token in
$MISSION_BUS_ADMIN_TOKEN when both are set, else starts a
`mission-bus serve` of its own in a temporary directory ($MISSION_BUS_BIN
or target/debug/mission-bus). Exits 1 unless every base capability and
every extended one (copy_thread, prune, delete_for_runs) passes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from mission_bus.langgraph import MissionBusSaver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    url = os.environ.get("MISSION_BUS_URL")
    token = os.environ.get("MISSION_BUS_ADMIN_TOKEN")
    server = None
    tmp = None
    if not (url and token):
        from mbserver import Server

        tmp = tempfile.TemporaryDirectory()
        server = Server(Path(tmp.name) / "bus").start()
        url, token = server.url, server.admin_token

    @checkpointer_test(name="MissionBusSaver")
    async def mission_bus_saver():
        saver = MissionBusSaver(url, token)
        try:
            yield saver
        finally:
            await saver.aclose()

    try:
        report = asyncio.run(validate(mission_bus_saver, progress=ProgressCallbacks.verbose()))
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
    report.print_report()
    ok = report.passed_all_base()
    print(f"conformance: base capabilities {'all passed' if ok else 'FAILED'}")
    for name in ("copy_thread", "prune", "delete_for_runs"):
        got = report.results.get(name)
        passed = bool(got and got.passed)
        print(f"conformance: {name} {'passed' if passed else 'FAILED'}")
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
