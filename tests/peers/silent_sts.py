"""An STS that goes wrong at the TCP level, for the bulkhead tests and bench/bench_bulkhead.py.

``mode`` says what happens to each connection from now on:
- ``silent``: accepted, the request read, then nothing: no answer, no close, until ``release()``
  (what a blackholed or overloaded STS looks like from the bridge: a read timeout);
- ``drop``: accepted, the request read, then closed without a byte (a load balancer in front of STS
  that resets its backends).
"""

from __future__ import annotations

import socket
import threading


class SilentSts:
    def __init__(self, mode: str = "silent") -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                mode = self.mode
                if mode == "silent":
                    self.held.append(conn)
            if mode != "silent":
                threading.Thread(target=self._drop, args=(conn,), daemon=True).start()

    @staticmethod
    def _drop(conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)
        except OSError:
            pass
        conn.close()

    @property
    def holding(self) -> int:
        with self._lock:
            return len(self.held)

    def release(self) -> None:
        """Close every held connection (the callers see a dropped connection)."""
        with self._lock:
            held, self.held = self.held, []
        for conn in held:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.release()
