"""A throwaway ``redis-server`` on a free loopback port, and free loopback ports.

The one place that starts a local Redis: the test fixtures, the benchmarks and ``bridge demo``
use it. Not for production (there the operator runs Redis).

    with LocalRedis(tmp_path) as rd:          # started; stopped (and its process reaped) on exit
        client = redis.Redis.from_url(rd.url)

    url, stop = start_redis(tmp_path)         # the same, for code that keeps the pair

``LocalRedis`` keeps its port and folder across ``crash()`` / ``kill()`` and ``start()``, so a
test can take Redis away and bring it back as a restarted server would come back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import redis

LOOPBACK = "127.0.0.1"


class RedisNotInstalled(RuntimeError):
    """No ``redis-server`` on PATH."""


def free_port(preferred: int = 0, host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now: ``preferred`` when it is free, else one the OS picks.

    The port is released before it is returned: whoever binds it next wins, so bind soon.
    """
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def redis_server() -> str:
    exe = shutil.which("redis-server")
    if not exe:
        raise RedisNotInstalled("redis-server is not installed (apt-get install redis-server, or `make test`)")
    return exe


class LocalRedis:
    """One ``redis-server`` bound to loopback, with its working folder in ``folder``.

    No snapshots and no append-only file unless asked for (``appendonly=True``: ``everysec``).
    ``extra_args`` are added to the command line (e.g. ``["--maxmemory", "64mb"]``).
    """

    def __init__(self, folder: Path | str, *, port: int = 0, preferred_port: int = 0, appendonly: bool = False,
                 extra_args: Sequence[str] = (), start_timeout: float = 10.0, own_session: bool = False) -> None:
        self.folder = Path(folder)
        self.port = port or free_port(preferred_port)
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.own_session = own_session  # its own process group: a terminal's Ctrl-C does not reach it (bridge demo)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [redis_server(), "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--dir", str(self.folder)]
        cmd += ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        return cmd + self.extra_args

    def start(self) -> LocalRedis:
        """Start (or restart, same port and folder) and wait until it answers PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, start_new_session=self.own_session)
        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.RedisError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"redis-server exited with {self.proc.returncode} "
                                           f"(port {self.port} taken?)") from None
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer on {self.url}") from None
                    time.sleep(0.025)
        finally:
            client.close()

    def crash(self) -> None:
        """SIGKILL: whatever was not yet on disk is lost, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    kill = crash

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it does not go within 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> LocalRedis:
        return self.start() if self.proc is None or self.proc.poll() is not None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_redis(folder: Path | str, *, preferred_port: int = 0, appendonly: bool = False
                ) -> tuple[str, Callable[[], None]]:
    """Start a :class:`LocalRedis` in ``folder``; returns its URL and the function that stops it."""
    rd = LocalRedis(folder, preferred_port=preferred_port, appendonly=appendonly).start()
    return rd.url, rd.stop
