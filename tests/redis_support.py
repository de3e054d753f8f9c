"""A throwaway ``redis-server`` on a free loopback port, for the stream tests.

`RedisServer` runs Debian's ``redis-server`` in a temporary directory with an append-only
file synced on every write, so a restart (``stop`` then ``start``) keeps every stream, group
and pending entry, as a production server with persistence would. ``wait_for`` is the
tests' bounded polling (no sleeping to let time pass: it returns as soon as the condition
holds).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def have_redis_server() -> bool:
    return Path(REDIS_SERVER).exists()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port>, data in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--protected-mode", "yes", "--daemonize", "no",
             "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
        try:
            wait_for(up, 10.0, "redis-server to answer PING")
        finally:
            client.close()

    def stop(self) -> None:
        """Shut down as an operator would (SIGTERM: the append-only file is complete)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text() if path.exists() else ""
