"""Waits with a bound: a test that can hang is a bug (one run hung for 40 minutes on a bare wait)."""

from __future__ import annotations

import threading
from typing import IO


def read_lines(stream: IO[str] | None, n: int, timeout: float = 30) -> list[str]:
    """The next ``n`` lines a child process writes to ``stream`` (its stdout or stderr pipe), failing after
    ``timeout`` seconds: a bare ``readline()`` waits forever on a child that stalls before writing them."""
    assert stream is not None, "the process was started without this pipe"
    lines: list[str] = []

    def read() -> None:
        for _ in range(n):
            lines.append(stream.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"the process wrote {len(lines)} of {n} lines in {timeout} s: {lines}"
    return lines
