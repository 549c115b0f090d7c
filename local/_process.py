"""Small helpers for starting and asking local servers: free ports, readiness checks, a kept-alive connection."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request


def free_port() -> int:
    """Ask the kernel for a port nobody listens on (there is a small race; callers retry on bind errors)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc=None) -> None:
    """Block until `url` answers any HTTP status, or raise TimeoutError.

    `proc` (a Popen) is checked on every try so a server that died at start fails fast
    instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered: that is ready enough
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.05)


class KeptConnection:
    """HTTP requests to one local server on one kept-alive connection, a new one after any failure: for a caller that
    asks many times a second on a machine whose CPU it measures, where a client library's request costs milliseconds
    of CPU and a bare one a fraction of one."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self._address, self._timeout = (host, port), timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; raises OSError or HTTPException, and the next request connects anew."""
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self._address, timeout=self._timeout)
            self._conn.request(method, path, body, headers or {})
            answer = self._conn.getresponse()
            return answer.status, answer.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
