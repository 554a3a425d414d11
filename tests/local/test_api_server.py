"""The local HTTP API takes a burst of concurrent clients, as API Gateway does."""
from __future__ import annotations

import http.client
import http.server
import socket
import threading
from typing import Iterator

import pytest
from chalice import Chalice

from local.api_server import ApiServer

CLIENTS = 40
# Generous bounds for a stuck run only; nothing here waits for them when the server is right.
TIMEOUT_SECONDS = 20.0


def ping_app(in_handler: threading.Barrier | None = None) -> Chalice:
    app = Chalice(app_name="api-server-burst", configure_logs=False)

    @app.route("/ping")
    def ping() -> dict:
        if in_handler is not None:
            in_handler.wait(TIMEOUT_SECONDS)  # every request is inside a handler at once
        return {"ok": True}

    return app


@pytest.fixture
def quiet_request_log(monkeypatch) -> Iterator[None]:
    # chalice local's handler prints one line per request to stderr
    monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "log_message", lambda *a, **k: None)
    yield


def raw_get(sock: socket.socket) -> int:
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


def test_a_burst_of_connections_waits_in_the_backlog_while_the_server_is_busy(quiet_request_log):
    """Bound and listening but not accepting yet, like a server busy between two accepts:
    every client's connection must still be taken (by the kernel, into the listen backlog).
    With socketserver's default backlog of 5 only 6 are; the rest are dropped or reset."""
    server = ApiServer(ping_app(), "127.0.0.1", 0)
    address = server._server.server.server_address[:2]
    start = threading.Barrier(CLIENTS)
    go = threading.Event()
    lock = threading.Condition()
    connected: list[socket.socket] = []
    outcomes: list[object] = []

    def client() -> None:
        start.wait()
        try:
            sock = socket.create_connection(address, timeout=TIMEOUT_SECONDS)
        except OSError as exc:
            with lock:
                outcomes.append(repr(exc))
                lock.notify_all()
            return
        with lock:
            connected.append(sock)
            lock.notify_all()
        go.wait(TIMEOUT_SECONDS)
        try:
            with sock:
                status: object = raw_get(sock)
        except OSError as exc:
            status = repr(exc)
        with lock:
            outcomes.append(status)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        with lock:
            lock.wait_for(lambda: len(connected) + len(outcomes) == CLIENTS, TIMEOUT_SECONDS)
            taken, refused = len(connected), list(outcomes)
        assert (taken, refused) == (CLIENTS, []), (
            f"only {taken} of {CLIENTS} connections were taken while the server was not "
            f"accepting (listen backlog too small); failures: {refused}")
    finally:
        server.start()
        go.set()
        for thread in threads:
            thread.join(TIMEOUT_SECONDS)
        server.stop()
    assert outcomes == [200] * CLIENTS


def test_forty_clients_at_once_are_served_concurrently(quiet_request_log):
    in_handler = threading.Barrier(CLIENTS)
    server = ApiServer(ping_app(in_handler), "127.0.0.1", 0)
    server.start()
    host, port = server._server.server.server_address[:2]
    start = threading.Barrier(CLIENTS)
    outcomes: list[object] = []
    lock = threading.Lock()

    def client() -> None:
        start.wait()
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
        try:
            connection.request("GET", "/ping")
            response = connection.getresponse()
            response.read()
            outcome: object = response.status
        except OSError as exc:  # ConnectionResetError among them
            outcome = repr(exc)
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_SECONDS * 2)
    finally:
        server.stop()
    # 200 for all: all forty were inside the handler together (the barrier), none was reset.
    assert outcomes == [200] * CLIENTS, outcomes


def test_the_same_app_can_be_served_twice_in_one_process(quiet_request_log):
    app = ping_app()
    for _ in range(2):
        server = ApiServer(app, "127.0.0.1", 0)
        server.start()
        host, port = server._server.server.server_address[:2]
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS) as sock:
                assert raw_get(sock) == 200
        finally:
            server.stop()
