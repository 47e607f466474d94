"""Run LangGraph's published checkpointer conformance suite
(langgraph-checkpoint-conformance) against MissionBusSaver and print its
report.

    python clients/python/conformance/run_conformance.py

Uses the server at $MISSION_BUS_URL with the admin token in
$MISSION_BUS_ADMIN_TOKEN when both are set, else starts a
`mission-bus serve` of its own in a temporary directory ($MISSION_BUS_BIN
or target/debug/mission-bus). Exits 1 unless every base capability and
copy_thread pass; prune and delete_for_runs are reported as the suite finds
them (not implemented: they need retention on the server).
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
    copy = report.results.get("copy_thread")
    copy_ok = bool(copy and copy.passed)
    print(f"conformance: copy_thread {'passed' if copy_ok else 'FAILED'}")
    ok = ok and copy_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
