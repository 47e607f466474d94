"""A `mission-bus serve` child process for tests, the conformance run and
the example: started on a data directory, its address and admin token read
from its stdout.

The binary is $MISSION_BUS_BIN (the Rust wrapper test sets it to the
binary cargo built), else target/debug/mission-bus of this repository.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 30.0


def binary() -> str:
    path = os.environ.get("MISSION_BUS_BIN") or str(REPO / "target" / "debug" / "mission-bus")
    if not Path(path).is_file():
        raise SystemExit(f"mission-bus binary not found at {path}: run `cargo build` "
                         "or set MISSION_BUS_BIN")
    return path


class Server:
    """A `mission-bus serve` child process on a data directory."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.proc: subprocess.Popen[str] | None = None
        self.addr: str | None = None

    def start(self, listen: str = "127.0.0.1:0") -> "Server":
        self.proc = subprocess.Popen(
            [binary(), "--data", str(self.data), "serve", "--listen", listen],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        lines: list[str] = []
        got = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if len(lines) < 2:
                    lines.append(line.strip())
                    if len(lines) == 2:
                        got.set()
            got.set()

        threading.Thread(target=read, daemon=True).start()
        if not got.wait(START_TIMEOUT) or len(lines) < 2:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {lines}")
        assert lines[0].startswith("listening on "), lines
        self.addr = lines[0].removeprefix("listening on ")
        token_path = lines[1].removeprefix("admin token: ")
        self.admin_token = Path(token_path).read_text().strip()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> None:
        """Start again on the same address and data."""
        assert self.addr is not None
        self.start(self.addr)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a Python child process that must import the
    same `mission_bus` as this one (the source tree under test, not some
    other installed copy)."""
    import mission_bus

    src = str(Path(mission_bus.__file__).resolve().parents[1])
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env
