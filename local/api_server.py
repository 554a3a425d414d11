"""The Chalice app over HTTP, as ``chalice local`` serves it, on a thread of this process."""
from __future__ import annotations

import errno
import json
import threading
from http.server import BaseHTTPRequestHandler

from chalice import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    ForbiddenError,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    ThreadedHTTPServer,
)

from local.moto_server import PortBusy

API_TIMEOUT_SECONDS = 30  # API Gateway's integration limit


class ContractGateway(LocalGateway):
    """Answers an unknown route as the deployed stack does (infra maps API Gateway's
    MISSING_AUTHENTICATION_TOKEN response to 404 NOT_FOUND): API.md's error body, not chalice
    local's imitation of API Gateway, which also echoes the Authorization header back."""

    def handle_request(self, method, path, headers, body):  # type: ignore[override]
        try:
            return super().handle_request(method, path, headers, body)
        except ForbiddenError:
            from functions.core.web import NOT_FOUND_ROUTE_BODY

            return {"statusCode": 404, "headers": {"Content-Type": "application/json; charset=utf-8"},
                    "multiValueHeaders": {},
                    "body": json.dumps(NOT_FOUND_ROUTE_BODY, ensure_ascii=False)}


class ContractRequestHandler(ChaliceRequestHandler):
    def __init__(self, request, client_address, server, app_object, config):  # type: ignore[no-untyped-def]
        self.local_gateway = ContractGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)  # type: ignore[arg-type]


class ConcurrentHTTPServer(ThreadedHTTPServer):
    """API Gateway takes every client's connection. chalice local's server (a thread per
    request already) listens with socketserver's backlog of 5, so a burst of clients overflows
    the accept queue between two accepts: the kernel drops their SYNs (a retry seconds later)
    or resets them (20 parallel clients saw 12 resets). The requests themselves still meet one
    at a time in moto (local/moto_server.py), by design."""

    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn
    daemon_threads = True      # a request in flight does not hold up stopping the runtime


def serve_app_locally(app: Chalice) -> None:
    """What ``chalice.local.create_local_server`` does to the app: ``app.current_request``
    becomes per thread, which the threaded server needs. Only once per app object: a second
    time would make ``CustomLocalChalice`` its own base class (TypeError)."""
    if not isinstance(app, CustomLocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice


class ApiServer:
    def __init__(self, app: Chalice, host: str, port: int):
        config = Config.create(chalice_stage="local", app_name=app.app_name,
                               lambda_timeout=API_TIMEOUT_SECONDS, lambda_memory_size=512)
        serve_app_locally(app)
        try:
            # chalice local's server with the handler that answers unknown routes in the
            # contract's shape, and a listen backlog that takes a burst of clients.
            self._server = LocalDevServer(app, config, host, port,
                                          handler_cls=ContractRequestHandler,
                                          server_cls=ConcurrentHTTPServer)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(f"HTTP API: port {port} on {host} is already in use (another "
                               "`make run`?). Stop that process or choose another port with "
                               "TIMEBANK_LOCAL_PORT=<port>.") from None
            raise
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        # LocalDevServer.serve_forever would print the configured (maybe 0) port; the runtime
        # logs the bound URL itself.
        self._server.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server.server_close()
