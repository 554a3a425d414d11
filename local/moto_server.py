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
import logging
import socket

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

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


class SerializedMotoServer(ThreadedMotoServer):
    def __init__(self, host: str, port: int):
        super().__init__(ip_address=host, port=port, verbose=False)
        self._socket: socket.socket | None = None
        self.compat_layer = False

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
        self._server = make_server(
            self._ip_address, self._socket.getsockname()[1],
            DomainDispatcherApplication(create_backend_app),
            threaded=False,
            request_handler=MotoRequestHandler,
            fd=self._socket.fileno(),
        )
        self._socket.close()  # werkzeug holds its own duplicate of the descriptor
        self._server_ready_event.set()
        self._server.serve_forever(poll_interval=0.2)

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._thread is None:
            return
        super().stop()
        if self._server is not None:
            self._server.server_close()
