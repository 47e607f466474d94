"""The README's Python and LangGraph quick starts, run as written.

Each block is taken from README.md (after its `<!-- quickstart:NAME -->`
marker) and run in a new process in a directory holding `bus-data`, the
data directory of a real server; only the URL is pointed at that server.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mbserver import Server, child_env

README = Path(__file__).resolve().parents[3] / "README.md"


def block(name: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- quickstart:{name} -->\n```python\n(.*?)```", text, re.S)
    assert m, f"README has no quickstart:{name} block"
    return m.group(1)


@pytest.fixture
def bus_data_server(tmp_path: Path):
    s = Server(tmp_path / "bus-data").start()
    yield s
    s.stop()


def run(code: str, server: Server, cwd: Path) -> list[str]:
    assert code.count("http://127.0.0.1:7411") == 1
    code = code.replace("http://127.0.0.1:7411", server.url)
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                         text=True, timeout=120, env=child_env())
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_python_quick_start_is_five_lines_and_runs(bus_data_server, tmp_path):
    code = block("python")
    assert len(code.strip().splitlines()) == 5
    assert run(code, bus_data_server, tmp_path) == ["3 True"]
    assert run(code, bus_data_server, tmp_path) == ["3 True"]  # and again


def test_langgraph_quick_start_runs_and_resumes_in_a_new_process(bus_data_server, tmp_path):
    code = block("langgraph")
    assert run(code, bus_data_server, tmp_path) == [
        "['start', 'plan']", "{'steps': ['start', 'plan']}"]
    # A second process continues the same thread from mission-bus.
    assert run(code, bus_data_server, tmp_path) == [
        "['start', 'plan', 'start', 'plan']", "{'steps': ['start', 'plan', 'start', 'plan']}"]
