"""A TCP proxy on 127.0.0.1 that behaves like a bad mobile link, for fault tests and the
sync benchmark.

- `rate_bps`: bytes per second in each direction, shared by all connections (a 2G link
  at 50 kbit/s is `rate_bps=6250`).
- `latency`: one-way delay in seconds added to every byte.
- `drop_probability`: the chance that an *exchange* (a client request and the server's
  answer; on a kept-alive connection each new request starts a new exchange) is cut: in
  the request or in the answer (even odds), after a uniformly random fraction of that
  message's bytes (the proxy reads Content-Length to know the size). The connection is
  then reset both ways, as when a radio link drops.

Everything random comes from one `random.Random(seed)`, so a failing run can be replayed.
Counters say what crossed the proxy: `bytes_up` (client → server), `bytes_down`,
`exchanges`, `cuts`, `connections`, `refused` (no server listening).
"""

from __future__ import annotations

import contextlib
import queue
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

SLICE = 512


@dataclass
class _Link:
    """The shared medium of one direction: one byte at a time at `rate_bps`."""

    rate_bps: float | None
    next_free: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transmit_time(self, size: int) -> float:
        """Reserve airtime for `size` bytes; returns when they will have arrived."""
        now = time.monotonic()
        if not self.rate_bps:
            return now
        with self.lock:
            start = max(now, self.next_free)
            self.next_free = start + size / self.rate_bps
            return self.next_free


class _Connection:
    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server: socket.socket | None = None
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.last_direction = "down"
        self.plan: tuple[str, float] | None = None  # (direction, fraction) of this exchange
        self.forwarded = {"up": 0, "down": 0}  # bytes of this exchange's request, answer
        self.head = b""  # the start of the message the cut is planned in
        self.cut_at: int | None = None

    def start(self) -> None:
        try:
            self.server = socket.create_connection(("127.0.0.1", self.proxy.target_port), 5)
        except OSError:
            self.proxy.refused += 1
            _reset(self.client)
            return
        for sock in (self.client, self.server):
            sock.settimeout(None)  # a 2G upload keeps the server silent for many seconds
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, target, direction in (
            (self.client, self.server, "up"),
            (self.server, self.client, "down"),
        ):
            pipe: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
            threading.Thread(target=self._read, args=(source, pipe), daemon=True).start()
            threading.Thread(
                target=self._write, args=(target, pipe, direction), daemon=True
            ).start()

    def _read(self, source: socket.socket, pipe: queue.Queue[tuple[float, bytes] | None]) -> None:
        while not self.closed.is_set():
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                pipe.put(None)
                return
            pipe.put((time.monotonic() + self.proxy.latency, data))

    def _write(
        self,
        target: socket.socket,
        pipe: queue.Queue[tuple[float, bytes] | None],
        direction: str,
    ) -> None:
        link = self.proxy.links[direction]
        while not self.closed.is_set():
            entry = pipe.get()
            if entry is None:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            due, data = entry
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for start in range(0, len(data), SLICE):
                piece = data[start : start + SLICE]
                piece, cut = self._allow(piece, direction)
                if piece:
                    arrival = link.transmit_time(len(piece))
                    pause = arrival - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    try:
                        target.sendall(piece)
                    except OSError:
                        self.close()
                        return
                    self.proxy.count(direction, len(piece))
                if cut:
                    self.proxy.cuts += 1
                    self.close()
                    return

    def _allow(self, piece: bytes, direction: str) -> tuple[bytes, bool]:
        """How much of `piece` may pass before this exchange is cut (and whether it is)."""
        with self.lock:
            if direction == "up" and self.last_direction == "down":
                # The client speaks again: a new request, a new draw.
                self.forwarded = {"up": 0, "down": 0}
                self.plan = self.proxy.draw_cut()
                self.head, self.cut_at = b"", None
            self.last_direction = direction
            sent = self.forwarded[direction]
            if self.plan is None or self.plan[0] != direction:
                self.forwarded[direction] += len(piece)
                return piece, False
            if self.cut_at is None:
                self.head += piece
                total = _message_length(self.head)
                if total is not None:
                    self.cut_at = max(int(self.plan[1] * total), sent + 1, 1)
            if self.cut_at is None:
                self.forwarded[direction] += len(piece)
                return piece, False
            room = self.cut_at - sent
            if room > len(piece):
                self.forwarded[direction] += len(piece)
                return piece, False
            self.forwarded[direction] += max(room, 0)
            return piece[: max(room, 0)], True

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            if sock is not None:
                _reset(sock)


def _message_length(head: bytes) -> int | None:
    """Length of an HTTP/1.1 message from its start (headers + Content-Length body), once
    its headers have arrived."""
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in head[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            with contextlib.suppress(ValueError):
                length = int(value.strip())
    return end + 4 + length


def _reset(sock: socket.socket) -> None:
    """Drop the connection at once, as a lost radio link looks to both ends. shutdown()
    first: a close() alone would wait for the thread blocked in recv() on this socket."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        *,
        rate_bps: float | None = None,
        latency: float = 0.0,
        drop_probability: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.target_port = target_port
        self.latency = latency
        self.drop_probability = drop_probability
        self._planned: dict[int, tuple[str, float]] = {}
        self.rng = random.Random(seed)
        self.links = {"up": _Link(rate_bps), "down": _Link(rate_bps)}
        self.bytes_up = 0
        self.bytes_down = 0
        self.cuts = 0
        self.exchanges = 0
        self.connections = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._open: list[_Connection] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def draw_cut(self) -> tuple[str, float] | None:
        """None, or where to cut this exchange: in the request ("up") or the answer
        ("down"), after a fraction of that message's bytes."""
        with self._lock:
            self.exchanges += 1
            planned = self._planned.pop(self.exchanges, None)
            if planned is not None:
                return planned
            if self.rng.random() < self.drop_probability:
                return self.rng.choice(("up", "down")), self.rng.random()
            return None

    def cut_exchange(self, ordinal: int = 1, direction: str = "up", fraction: float = 0.5) -> None:
        """Cut the `ordinal`-th exchange from now (1: the next one) in the request ("up")
        or the answer ("down") after `fraction` of its bytes: benchmarks measure what one
        drop costs."""
        with self._lock:
            self._planned[self.exchanges + ordinal] = (direction, fraction)

    def count(self, direction: str, size: int) -> None:
        with self._lock:
            if direction == "up":
                self.bytes_up += size
            else:
                self.bytes_down += size

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_up = self.bytes_down = self.cuts = self.exchanges = 0
            self.connections = self.refused = 0

    @property
    def wire_bytes(self) -> int:
        return self.bytes_up + self.bytes_down

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            connection = _Connection(self, client)
            self._open.append(connection)
            threading.Thread(target=connection.start, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for connection in self._open:
            connection.close()
