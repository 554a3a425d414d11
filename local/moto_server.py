"""The embedded moto endpoint, serving one request at a time.

moto's backends are plain in-memory objects without locks. ``ThreadedMotoServer`` serves each
request on its own thread, so the API, the queue consumers and the schedules calling it at
once could interleave inside a backend. Here the same server runs single-threaded: every AWS
call of the process is serialized through one thread. Consequently nobody may long-poll
(``WaitTimeSeconds`` > 0) — it would stall everyone else; the consumers short-poll.

Before serving it installs ``local.moto_compat`` (unless ``TIMEBANK_MOTO_COMPAT=off``): without
it moto's memory and time per request grow with everything ever stored.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder, run_wsgi_app

from local import moto_compat


class PortBusy(RuntimeError):
    pass


def bind_listening_socket(host: str, port: int, what: str, env_name: str) -> socket.socket:
    """Bind first so a busy port is a clear message, not a hung start or a traceback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(
                f"{what}: port {port} on {host} is already in use (another `make run`?). "
                f"Stop that process or choose another port with {env_name}=<port>.") from None
        raise
    return sock


_BY_HOSTNAME = ("dynamodb", "sqs")
_SERVERS: list["SerializedMotoServer"] = []
_installed = False


def _install_transport() -> None:
    """Every botocore endpoint of the process (clients made before or after) asks the running
    servers first; a request no server takes goes out as usual."""
    global _installed
    if _installed:
        return
    from botocore.endpoint import Endpoint

    sent = Endpoint._send

    def _send(self: Any, request: Any) -> Any:
        for server in list(_SERVERS):
            response = server.send_in_process(request, self._endpoint_prefix)
            if response is not None:
                return response
        return sent(self, request)

    Endpoint._send = _send
    _installed = True


class _LazyStubber:
    _stubber: Any = None

    def process_request(self, request: Any) -> Any:
        if self._stubber is None:
            from moto.core.botocore_stubber import BotocoreStubber

            self._stubber = BotocoreStubber()
        return self._stubber.process_request(request)


_STUBBER = _LazyStubber()


class _Body(io.BytesIO):
    """What botocore reads a response from (``stream`` for parsed bodies, ``read`` for streams)."""

    def stream(self, **_: Any):
        yield self.getvalue()


class SerializedMotoServer(ThreadedMotoServer):
    """The endpoint, and a faster way to it for this process's own calls.

    Calls the product makes from this process (the API, consumers, schedules) do not need a
    socket: a botocore ``before-send`` handler hands each request for the endpoint straight to
    the same moto WSGI application, under the same lock the server takes per request, so they
    still run one at a time with the server's. That halves the cost of a call (about 3.5 ms
    instead of 7 ms for a GetItem here), which is most of what a request costs locally. Other
    processes (a second shell, a browser uploading a photo) use the socket as before.
    ``TIMEBANK_LOCAL_IN_PROCESS=off`` sends everything through the socket.
    """

    def __init__(self, host: str, port: int):
        super().__init__(ip_address=host, port=port, verbose=False)
        self._socket: socket.socket | None = None
        self.compat_layer = False
        self.lock = threading.Lock()
        self._app = DomainDispatcherApplication(create_backend_app)
        self.in_process = False

    def start(self) -> None:
        # Fails (MotoCompatError) before anything listens if moto is not what the layer expects.
        self.compat_layer = moto_compat.install_unless_disabled()
        # werkzeug logs one line per request; AWS calls are the runtime's plumbing, not news.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._socket = bind_listening_socket(self._ip_address, self._port, "moto server",
                                             "TIMEBANK_MOTO_PORT")
        super().start()

    def _server_entry(self) -> None:
        assert self._socket is not None
        def serialized(environ: dict[str, Any], start_response: Any) -> Any:
            with self.lock:
                return list(self._app(environ, start_response))

        self._server = make_server(
            self._ip_address, self._socket.getsockname()[1],
            serialized,
            threaded=False,
            request_handler=MotoRequestHandler,
            fd=self._socket.fileno(),
        )
        self._socket.close()  # werkzeug holds its own duplicate of the descriptor
        self._server_ready_event.set()
        self._server.serve_forever(poll_interval=0.2)

    def serve_this_process(self) -> bool:
        """Route this process's calls for the endpoint in-process (see the class docstring)."""
        if os.environ.get("TIMEBANK_LOCAL_IN_PROCESS", "on").lower() in ("0", "off", "false", "no"):
            return False
        _install_transport()
        self.in_process = True
        _SERVERS.append(self)
        return True

    def send_in_process(self, request: Any, service: str) -> Any:
        """The response to ``request`` if it is for this endpoint, else None (sent as usual)."""
        if not self.in_process or self._thread is None or not request.url.startswith(self.endpoint + "/"):
            return None
        if service in _BY_HOSTNAME:
            return self._dispatch_to_backend(request, service)
        from botocore.awsrequest import AWSResponse

        parts = urlsplit(request.url)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        environ = EnvironBuilder(
            path=parts.path, query_string=parts.query, method=request.method, data=body or b"",
            base_url=f"{parts.scheme}://{parts.netloc}",
            headers={k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
        ).get_environ()
        with self.lock:
            chunks, status, headers = run_wsgi_app(self._app, environ)
            data = b"".join(chunks)
        return AWSResponse(request.url, int(status.split()[0]), dict(headers), _Body(data))

    def _dispatch_to_backend(self, request: Any, service: str) -> Any:
        """DynamoDB and SQS name their operation in the request itself, so moto's own in-process
        dispatcher (what ``mock_aws`` uses) serves them once the URL carries the AWS host name:
        no HTTP parsing at all (a GetItem costs about what it costs under ``mock_aws``)."""
        from botocore.awsrequest import AWSPreparedRequest, AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        parts = urlsplit(request.url)
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "cn-north-1"
        url = f"https://{service}.{region}.amazonaws.com{parts.path}" + (f"?{parts.query}" if parts.query else "")
        rewritten = AWSPreparedRequest(method=request.method, url=url, headers=request.headers,
                                       body=request.body, stream_output=False)
        with self.lock:
            status, headers, body = _STUBBER.process_request(rewritten)
        return AWSResponse(request.url, status, headers, MockRawResponse(body))

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.in_process = False
        if self in _SERVERS:
            _SERVERS.remove(self)
        if self._thread is None:
            return
        super().stop()
        if self._server is not None:
            self._server.server_close()
