"""What the local HTTP servers (`local.vertex`, `local.gcs_limits`) share: a threaded HTTP/1.1 server that can
close its client connections on stop, the handler half of that, their handles' address and `with`, and the
`python -m` run loop.

A keep-alive client holds its connection's handler thread; stop closes every tracked connection, so no handler
serves a request after it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class Handler(BaseHTTPRequestHandler):
    """One client connection, registered with its `Server` while it is open; http.server's access lines go to
    `access_log` at DEBUG, never to stderr."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without this, +40 ms a call
    access_log: logging.Logger  # set by each server's handler: its lines keep that server's logger name

    def setup(self):
        super().setup()
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, fmt, *args):
        self.access_log.debug("%s " + fmt, self.address_string(), *args)


class Server(ThreadingHTTPServer):
    """Stdlib threaded HTTP/1.1 server, one daemon thread per client connection, that knows which connections
    are open. Each server sets its own `request_queue_size`."""

    daemon_threads = True
    allow_reuse_address = True  # skips TIME_WAIT only: a port someone listens on still fails to bind

    def __init__(self, address, handler: type[Handler], **bound: Any):
        """Listen on `address` (OSError when it cannot be bound); `bound` becomes class attributes of a subclass
        of `handler`, how a handler reaches the state of this server."""
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, type("BoundHandler", (handler,), bound))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, name: str) -> None:
        """Serve from a daemon thread called `name`; a stop is noticed within 0.1 s."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=name,
                                        daemon=True)
        self._thread.start()

    def track(self, conn, alive: bool) -> None:
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_connections(self) -> None:
        """Drop client connections so no handler thread serves a request after stop."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Stop accepting, drop every client connection, close the socket, then join the serving thread (5 s at
        most). Call once, after `start`."""
        self.shutdown()
        self.close_connections()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class Running:
    """A handle of a server running in this process: its address, and `with` that stops it."""

    _server: Server

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_until_stopped(parser: argparse.ArgumentParser, args: argparse.Namespace,
                        start: Callable[[dict[str, Any]], Running], *, switches: Iterable[str],
                        from_env: Callable[[Any], dict[str, Any]], coerce: Callable[[str, Any], Any]) -> int:
    """The body of a `python -m` entry: log to stderr at `args.log_level` (stdout is for the URL), start the
    server, print its URL on one line, serve until SIGTERM or SIGINT, stop it; 0 then.

    `start` gets the start values of the switches named in `switches`: `from_env(os.environ)`, then the flags of
    `args` of the same names that were given (flags win), each checked by `coerce`. A ValueError (a bad switch
    value or argument) ends in `parser.error` (exit 2); an OSError from `start` (port in use, unknown host)
    prints one line naming host:port on stderr and returns 2, with no traceback.
    """
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        values = from_env(os.environ)
        for name in switches:
            value = getattr(args, name)
            if value is not None:
                values[name] = coerce(name, value)
        server = start(values)
    except ValueError as exc:  # SwitchError is a ValueError
        parser.error(str(exc))
    except OSError as exc:
        where = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
        print(f"{parser.prog}: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(server.url, flush=True)
    while not stop.wait(1.0):
        pass
    server.stop()
    return 0
