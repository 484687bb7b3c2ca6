"""A dropped connection is tried again with the same Idempotency-Key; a refused one is not."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from elysium import http_retry
from tests.api.conftest import free_port


class DroppingServer:
    """HTTP on loopback that reads each request and hangs up on the first ``drops`` of them
    (as a killed replica does), then answers 200; it keeps every request's headers."""

    def __init__(self, drops: int, cut: bool = False) -> None:
        self.drops = drops
        self.cut = cut  # hang up half-way through the answer instead of before it
        self.requests: list[dict[str, str]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                lines = head.decode().split("\r\n")[1:]
                self.requests.append(
                    {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
                )
                if len(self.requests) <= self.drops:
                    if self.cut:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 90\r\n\r\n{")
                    continue  # closed unanswered, or half-answered
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
                )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dropping() -> Iterator[DroppingServer]:
    server = DroppingServer(drops=2)
    yield server
    server.close()


def test_a_dropped_post_is_sent_again_with_one_idempotency_key(dropping: DroppingServer) -> None:
    resp = http_retry.request(requests.Session(), "POST", dropping.url + "/v1/enroll", json={})

    assert resp.status_code == 200
    keys = [r.get("idempotency-key") for r in dropping.requests]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1


def test_an_answer_cut_off_after_its_headers_is_asked_again_with_the_same_key() -> None:
    server = DroppingServer(drops=1, cut=True)
    try:
        resp = http_retry.request(requests.Session(), "POST", server.url + "/v1/enroll", json={})
    finally:
        server.close()

    assert resp.status_code == 200 and resp.json() == {}
    keys = [r["idempotency-key"] for r in server.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_the_callers_idempotency_key_is_kept(dropping: DroppingServer) -> None:
    http_retry.request(
        requests.Session(), "PUT", dropping.url + "/x", headers={"Idempotency-Key": "mine"}
    )

    assert [r["idempotency-key"] for r in dropping.requests] == ["mine"] * 3


def test_a_get_is_retried_without_a_key(dropping: DroppingServer) -> None:
    assert http_retry.request(requests.Session(), "GET", dropping.url + "/x").ok
    assert len(dropping.requests) == 3
    assert not any("idempotency-key" in r for r in dropping.requests)


def test_drops_past_the_budget_raise() -> None:
    server = DroppingServer(drops=1000)
    try:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ConnectionError):
            http_retry.request(requests.Session(), "POST", server.url + "/x", budget_s=0.5)
        assert time.monotonic() - started < 2
        assert 2 <= len(server.requests) <= 5
    finally:
        server.close()


def test_a_refused_connection_fails_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        http_retry.request(requests.Session(), "POST", f"http://127.0.0.1:{free_port()}/x")
    assert time.monotonic() - started < 1


def test_send_words_a_call_without_an_answer_as_one_line_and_an_exit_code() -> None:
    session = requests.Session()
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens
    with pytest.raises(http_retry.NoAnswer) as refused:
        http_retry.send(session, "GET", server, "/readyz", ca=None, timeout=2)
    assert refused.value.code == "unreachable" and refused.value.exit_code == 3
    assert str(refused.value).startswith(f"cannot reach the API at {server}: ")
    assert "\n" not in str(refused.value)
    with pytest.raises(http_retry.NoAnswer) as bad:
        http_retry.send(session, "GET", "127.0.0.1:8443", "/readyz", ca=None, timeout=2)
    assert bad.value.code == "bad_url" and bad.value.exit_code == 1


def test_error_of_reads_the_api_error_and_falls_back_to_the_status_line() -> None:
    answer = requests.Response()
    answer.status_code, answer.reason = 400, "Bad Request"
    answer._content = b'{"error": {"code": "invalid", "message": "no", "fields": {"name": 1}}}'
    assert http_retry.error_of(answer) == ("invalid", "no", {"name": "1"})
    answer._content = b"<html>proxy error</html>"
    assert http_retry.error_of(answer) == ("http_400", "Bad Request", {})
