"""Fixtures: a real `mission-bus serve` per test, in its own tempdir.

The binary is $MISSION_BUS_BIN (the Rust wrapper test sets it to the
binary cargo built), else target/debug/mission-bus of this repository.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mbserver import Server  # noqa: E402

from mission_bus import Client  # noqa: E402


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path / "bus").start()
    yield s
    s.stop()


@pytest.fixture
def admin(server: Server):
    with Client(server.url, server.admin_token) as c:
        yield c


@pytest.fixture
def mission(admin: Client):
    """A new mission: (mission id, lead token)."""
    mid = f"m-{uuid.uuid4().hex[:12]}"
    created = admin.create_mission(mid, "test mission", "lead")
    return mid, created.lead_token
