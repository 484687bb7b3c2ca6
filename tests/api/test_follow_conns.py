"""A follower's connection between an answer and its next request waits on the worker's own
thread (api/follow_conns.py): a plain follow parks from there, anything else on that
connection is still served by gunicorn and the app as before."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import psycopg

from api.follow_conns import END, follow_head
from tests.api.conftest import Api
from tests.api.test_peer_self import peer

__all__ = ["peer"]  # the fixture, shared

FOLLOW = b"GET /v1/peer/config?version=abc&wait=5 HTTP/1.1\r\nHost: api\r\n"


def test_a_plain_follow_is_read_and_anything_else_is_left_to_gunicorn() -> None:
    head = follow_head(FOLLOW + b"Accept: */*\r\n" + END[2:])
    assert head is not None and head.query == "version=abc&wait=5" and head.accept == "*/*"
    assert head.environ()["HTTP_ACCEPT"] == "*/*"
    assert follow_head(FOLLOW + END[2:]) is not None  # no Accept: JSON
    assert follow_head(FOLLOW + b"Connection: Keep-Alive\r\n" + END[2:]) is not None
    for unusual in (
        FOLLOW.replace(b"GET", b"POST"),
        FOLLOW.replace(b"HTTP/1.1", b"HTTP/1.0"),
        FOLLOW.replace(b"/v1/peer/config", b"/v1/peer/config/"),
        FOLLOW.replace(b"/v1/peer/config", b"/v1/peer/paths"),
        FOLLOW + b"Accept: text/plain\r\n",
        FOLLOW + b"Accept: */*\r\nAccept: */*\r\n",
        FOLLOW + b"Content-Length: 3\r\n",
        FOLLOW + b"Transfer-Encoding: chunked\r\n",
        FOLLOW + b"Connection: close\r\n",
        FOLLOW + b"Upgrade: h2c\r\n",
        FOLLOW + b"Bad Header: x\r\n",
        FOLLOW + b"no colon\r\n",
        FOLLOW.replace(b"abc", "\u00e9".encode()),
    ):
        assert follow_head(unusual + END[2:]) is None, unusual


def test_other_requests_on_a_followers_connection_are_served_as_before(
    peer: tuple[Api, int],
) -> None:
    api, _ = peer
    version = api.get("/v1/peer/config").json()["version"]
    assert api.get("/healthz").status_code == 200  # another path, same connection
    again = api.get("/v1/peer/config", params={"version": version, "wait": 0.2})
    assert again.status_code == 200 and again.json()["version"] == version
    text = api.get("/v1/peer/config", headers={"Accept": "text/plain"})
    assert text.status_code == 200 and "[Interface]" in text.text
    closing = api.get("/v1/peer/config", headers={"Connection": "close"})
    assert closing.status_code == 200 and closing.headers["Connection"] == "close"
    assert api.get("/v1/peer/config").json()["version"] == version  # on a new connection


def test_a_follow_that_comes_in_pieces_parks_and_is_woken(
    peer: tuple[Api, int], db: psycopg.Connection[Any]
) -> None:
    """A head split over TLS records is put together before it is read; the follow parks
    and a change answers it with the worker's own JSON answer, kept alive."""
    api, _ = peer
    cert, key = api.session.cert  # type: ignore[misc]
    url = urlsplit(api.base)
    context = ssl.create_default_context(cafile=api.ca)
    context.load_cert_chain(cert, key)
    with (
        socket.create_connection((url.hostname, url.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=url.hostname) as sock,
    ):
        first = exchange(sock, b"GET /v1/peer/config HTTP/1.1\r\nHost: api\r\n\r\n")
        version = first["version"]
        sock.sendall(f"GET /v1/peer/config?version={version}&wait=20 HTTP/1.1\r\n".encode())
        time.sleep(0.3)
        sock.sendall(b"Host: api\r\nAccept: application/json\r\n")
        time.sleep(0.3)
        threading.Timer(1.0, db.execute, ("UPDATE interfaces SET dns = '{10.30.0.57}'",)).start()
        started = time.monotonic()
        woken = exchange(sock, b"\r\n")
        assert woken["dns"] == ["10.30.0.57"] and woken["version"] != version
        assert 0.8 < time.monotonic() - started < 15  # it waited for the change, then woke
        assert exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")["status"] == "ok"


def exchange(sock: ssl.SSLSocket, request: bytes) -> dict[str, Any]:
    """Send (the rest of) a request; read one JSON answer with its Content-Length."""
    sock.sendall(request)
    data = b""
    while END not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(END)
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", lines
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["connection"] == "keep-alive"
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    answer: dict[str, Any] = json.loads(body)
    return answer
