"""The Chalice app over HTTP, as ``chalice local`` serves it, on a thread of this process."""
from __future__ import annotations

import errno
import functools
import json
import threading
from http.server import BaseHTTPRequestHandler

from chalice import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, ForbiddenError, LocalDevServer, LocalGateway, create_local_server

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


class ApiServer:
    def __init__(self, app: Chalice, host: str, port: int):
        config = Config.create(chalice_stage="local", app_name=app.app_name,
                               lambda_timeout=API_TIMEOUT_SECONDS, lambda_memory_size=512)
        try:
            # create_local_server also makes app.current_request thread-local, which the
            # threaded HTTP server needs.
            self._server: LocalDevServer = create_local_server(app, config, host, port)
            # Same server, with the handler that answers unknown routes in the contract's shape.
            self._server.server.RequestHandlerClass = functools.partial(
                ContractRequestHandler, app_object=app, config=config)
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
