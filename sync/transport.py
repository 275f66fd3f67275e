"""HTTP for the sync client on the standard library alone: one kept-alive connection,
JSON and binary bodies, gzip both ways, and errors split into "try again later"
(`TransportError`, 5xx, 429) and "this will not work" (`SyncRefused`)."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["HttpResponse", "SyncRefused", "Transport", "TransportError"]

USER_AGENT = "diiwaan-sync/1"
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class TransportError(Exception):
    """The request may or may not have reached the server; trying again is safe."""


class SyncRefused(Exception):
    """The server answered with an error that retrying will not fix."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def error(self) -> tuple[str, str, Any]:
        try:
            error = (self.json() or {}).get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        return (
            str(error.get("code") or self.status),
            str(error.get("message") or self.body[:200].decode("utf-8", "replace")),
            error.get("details"),
        )


@dataclass
class WireCounter:
    """Bytes this client put into requests and got out of responses (bodies as sent, so
    compressed when compressed); the benchmark counts the real wire at a proxy."""

    requests: int = 0
    sent: int = 0
    received: int = 0


@dataclass
class Transport:
    base_url: str
    token: str
    timeout: float = 60.0
    counter: WireCounter = field(default_factory=WireCounter)
    # Reconnect rather than reuse a connection idle this long (gunicorn keeps 2 s).
    idle_reconnect: float = 1.5

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL {self.base_url!r} is not http(s)://host[:port][/path]")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                self._connection = http.client.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        return self._connection

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        full = path if path.startswith(("http://", "https://")) else self._prefix + path
        if query:
            full += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        return full

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        query: Mapping[str, Any] | None = None,
        compress: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """One request; raises TransportError when the link fails. Never retried here:
        the caller knows whether and how to resume."""
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            content_type = "application/json"
        all_headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        }
        if body is not None:
            if compress:
                packed = gzip.compress(body, compresslevel=6, mtime=0)
                if len(packed) < len(body):
                    body = packed
                    all_headers["Content-Encoding"] = "gzip"
            all_headers["Content-Type"] = content_type or "application/octet-stream"
        all_headers.update(headers or {})
        target = self.url(path, query)
        idle = time.monotonic() - self._last_used
        if self._connection is not None and idle > self.idle_reconnect:
            # Servers close idle kept-alive connections; a request on one already closed
            # would fail in a way that looks like a dropped link.
            self.close()
        connection = self._connect()
        try:
            connection.request(method, target, body=body, headers=all_headers)
            self.counter.requests += 1
            self.counter.sent += len(body or b"")
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise TransportError(f"{method} {target}: {_describe(error)}") from error
        finally:
            self._last_used = time.monotonic()
        self.counter.received += len(raw)
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if response.getheader("Content-Encoding", "").lower() == "gzip":
            raw = _gunzip(raw)
        return HttpResponse(response.status, dict(response.getheaders()), raw)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON request that must succeed: 2xx → the decoded body; 5xx/429 →
        TransportError (try later); any other error → SyncRefused."""
        response = self.request(method, path, **kwargs)
        return check(response)

    def download(self, url: str) -> bytes:
        response = self.request("GET", url)
        if response.status != 200:
            check(response)
        return response.body


def check(response: HttpResponse) -> Any:
    if 200 <= response.status < 300:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if answer is None:
            raise TransportError(f"the {response.status} answer arrived empty or garbled")
        return answer
    code, message, details = response.error()
    if response.status in RETRYABLE_STATUSES:
        raise TransportError(f"server answered {response.status} {code}: {message}")
    raise SyncRefused(response.status, code, message, details)


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_RESPONSE_BYTES)
    except zlib.error as error:
        raise TransportError(f"the gzip response is damaged: {error}") from None
    if inflater.unconsumed_tail:
        raise TransportError(f"the response inflates beyond {MAX_RESPONSE_BYTES} bytes")
    if not inflater.eof:
        raise TransportError("the gzip response was cut short")
    return out


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
