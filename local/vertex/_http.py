"""The HTTP layer: routes, Google's JSON error shape, and the control-plane fault injection.

Stdlib `ThreadingHTTPServer` (HTTP/1.1 keep-alive, one thread per connection): no framework between
the SDK and the emulator, so nothing answers HTML or a traceback. Every error is
`{"error": {"code", "message", "status"}}`.

Emulator-wide faults apply to REST calls (not to the admin endpoint) whose kind is listed in
`http_fault_calls`:
1. `http_error_next` / `http_error_fraction`: answer `http_error_code` and do nothing else;
2. otherwise the call does its work (`create_500_next`: the job IS created and runs, the answer is 500);
3. `http_hang_next` / `http_hang_fraction`: the answer is held `http_hang_seconds` AFTER the work is
   done, so a client timing out on a create leaves a real job behind, the ambiguous create the pipeline
   must resolve by label.
Job-scoped faults come with the job's switches (labels `emulator_create_fault`, `emulator_call_fault`):
its own create answers 429/503 (nothing created), 500 (created) or late (created); and its next
`call_fault_next` get/cancel/delete calls answer an error (nothing done) or late (done).

Request bodies are framed by Content-Length or by chunked transfer coding; a body that cannot be
framed is answered with an error and the connection is closed, so its bytes are never parsed as the
next request.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from local import _serving
from local.vertex._errors import STATUS_FOR_HTTP, ApiError, fault_error
from local.vertex._switches import SwitchError, Switches

log = logging.getLogger("local.vertex.http")

_ID = r"[^/:]+"
_PARENT = rf"projects/{_ID}/locations/{_ID}"
_ROUTES = [
    (re.compile(rf"^/(?:v1|v1beta1)/({_PARENT})/batchPredictionJobs$"), "collection"),
    (re.compile(rf"^/(?:v1|v1beta1)/({_PARENT}/batchPredictionJobs/{_ID}):cancel$"), "cancel"),
    (re.compile(rf"^/(?:v1|v1beta1)/({_PARENT}/batchPredictionJobs/{_ID})$"), "job"),
    (re.compile(rf"^/(?:v1|v1beta1)/({_PARENT}/operations/{_ID})$"), "operation"),
]
ADMIN = "/emulator/v1"
_JOB_CALLS = ("get", "cancel", "delete")  # the calls that name one job, hit by that job's call_fault
MAX_BODY = 10 * 1024 * 1024  # create bodies are tiny; this bounds what one request can make us buffer
_MAX_LINE = 4096  # a chunk-size line or a trailer line
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")


class Api:
    """What the handler calls: the store, the runner and the switches, plus the fault dice."""

    def __init__(self, store, runner, switches: Switches, seed: int = 0):
        self.store = store
        self.runner = runner
        self.switches = switches
        self.stopping = threading.Event()
        self._rng = random.Random(seed ^ 0x5EED)
        self._rng_lock = threading.Lock()
        # REST calls received, by kind (create, get, list, ...), faulted ones included: a client's cost in
        # calls (one list per page, not one get per job) is then checked without a proxy in between.
        self._calls: dict[str, int] = {}
        self._calls_lock = threading.Lock()

    def roll(self, fraction: float) -> bool:
        if fraction <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < fraction

    def fault_applies(self, call: str) -> bool:
        return call in self.switches.get("http_fault_calls")

    def count(self, call: str) -> None:
        with self._calls_lock:
            self._calls[call] = self._calls.get(call, 0) + 1

    def calls(self, *, reset: bool = False) -> dict[str, int]:
        with self._calls_lock:
            counts = dict(self._calls)
            if reset:
                self._calls.clear()
        return counts


def _job_name(name: str) -> str:
    if not name.rsplit("/", 1)[-1].isdigit():
        raise ApiError("INVALID_ARGUMENT", f"Invalid BatchPredictionJob resource name: {name}. "
                       "The job id must be an int64 number.")
    return name


class Handler(_serving.Handler):
    server_version = "VertexBatchEmulator/1.0"
    access_log = log
    api: Api  # set on the subclass the server builds

    # --- plumbing -----------------------------------------------------------------------------------
    def send_json(self, status: int, payload) -> None:
        body = orjson.dumps(payload)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            if self.api.stopping.is_set() or self.close_connection:
                self.send_header("Connection", "close")  # also sets close_connection
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, oversized headers) in Google's JSON shape too."""
        status = STATUS_FOR_HTTP.get(code, "INVALID_ARGUMENT" if code < 500 else "INTERNAL")
        self.close_connection = True
        self.send_json(code, {"error": {"code": code, "message": message or "Bad request.", "status": status}})

    def read_body(self) -> bytes:
        """Read the whole body up front: an answer sent with the body unread would leave it in the
        keep-alive connection, to be parsed as the next request. Raises ApiError when the body cannot
        be framed; the caller then closes the connection."""
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            if [c.strip().lower() for c in coding.split(",")] != ["chunked"]:
                raise ApiError("UNIMPLEMENTED", f"Transfer-Encoding {coding!r} is not supported; use chunked "
                                                "or Content-Length.")
            if self.headers.get("Content-Length") is not None:
                self.close_connection = True  # both framings: chunked wins, and the connection is not reused
            return self.read_chunked()
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            raise ApiError("INVALID_ARGUMENT", f"Invalid Content-Length header: {raw!r}.")
        length = int(raw)
        if length > MAX_BODY:
            raise _too_large()
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise ApiError("INVALID_ARGUMENT", "The request body ended before Content-Length bytes.")
        return body

    def read_chunked(self) -> bytes:
        """Decode a `Transfer-Encoding: chunked` body (chunk extensions and trailers are skipped)."""
        parts, total = [], 0
        while True:
            size_text = self.framing_line().split(b";", 1)[0].strip()
            if not _HEX.match(size_text):
                raise ApiError("INVALID_ARGUMENT", f"Malformed chunked body: bad chunk size {size_text[:20]!r}.")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise _too_large()
            data = self.rfile.read(size)
            if len(data) != size or self.framing_line().strip():
                raise ApiError("INVALID_ARGUMENT", "Malformed chunked body: a chunk does not match its size.")
            parts.append(data)
        while self.framing_line().strip():  # trailer fields, up to the blank line
            pass
        return b"".join(parts)

    def framing_line(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE or not line.endswith(b"\n"):
            raise ApiError("INVALID_ARGUMENT", "Malformed chunked body: a line is too long or the body ended early.")
        return line

    def json_body(self, required: bool):
        raw = self.body
        if not raw.strip():
            if required:
                raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received. The request body is empty.")
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from None

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_PUT(self):
        self.dispatch("PUT")

    def dispatch(self, method: str) -> None:
        try:
            self.body = self.read_body()
        except ApiError as exc:
            self.close_connection = True  # what is left of the body must not be read as a request
            self.send_json(exc.http_status, exc.body())
            return
        try:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            if path == ADMIN or path.startswith(ADMIN + "/"):
                status, payload = self.admin(method, path[len(ADMIN):])
            else:
                status, payload = self.rest(method, path, query)
        except ApiError as exc:
            status, payload = exc.http_status, exc.body()
        except Exception:
            log.exception("unexpected error answering %s %s", method, self.path)
            status, payload = 500, ApiError("INTERNAL", "Internal error encountered.").body()
        self.send_json(status, payload)

    # --- admin --------------------------------------------------------------------------------------
    def admin(self, method: str, path: str):
        switches = self.api.switches
        if path == "/switches":
            if method == "GET":
                return 200, switches.as_json()
            if method in ("POST", "PATCH"):
                body = self.json_body(required=True)
                if not isinstance(body, dict):
                    raise ApiError("INVALID_ARGUMENT", "Send a JSON object of switch names and values.")
                try:
                    return 200, switches.update(body)
                except SwitchError as exc:
                    raise ApiError("INVALID_ARGUMENT", str(exc)) from None
            if method == "DELETE":
                return 200, switches.reset()
        if path == "/health" and method == "GET":
            return 200, {"status": "ok"}
        if path == "/stats" and method == "GET":
            counts: dict[str, int] = {}
            for job in self.api.store.all_jobs():
                counts[job.state] = counts.get(job.state, 0) + 1
            store = self.api.store
            return 200, {"jobs": sum(counts.values()), "states": counts, "active": store.active,
                         "peakActive": store.peak_active, "calls": self.api.calls()}
        if path == "/stats/reset" and method == "POST":
            self.api.store.reset_peak()
            self.api.calls(reset=True)
            return 200, {"peakActive": self.api.store.peak_active}
        raise ApiError("NOT_FOUND", f"No admin endpoint {method} {ADMIN}{path}.")

    # --- REST ---------------------------------------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[str, str]:
        for regex, kind in _ROUTES:
            m = regex.match(path)
            if not m:
                continue
            call = {("collection", "GET"): "list", ("collection", "POST"): "create",
                    ("cancel", "POST"): "cancel", ("job", "GET"): "get", ("job", "DELETE"): "delete",
                    ("operation", "GET"): "operation"}.get((kind, method))
            if call is None:
                raise ApiError("NOT_FOUND", f"Method {method} is not supported on {path}.")
            return call, m.group(1)
        raise ApiError("NOT_FOUND", f"The requested URL {path} was not found on this server.")

    def rest(self, method: str, path: str, query: dict):
        call, target = self.route(method, path)
        api, switches = self.api, self.api.switches
        api.count(call)
        faulty = api.fault_applies(call)
        if faulty and (switches.take("http_error_next") or api.roll(switches.get("http_error_fraction"))):
            raise fault_error(switches.get("http_error_code"))
        hold = 0.0
        if call in _JOB_CALLS:
            fault = api.store.take_call_fault(_job_name(target))
            if fault is not None:
                kind, seconds = fault
                if kind != "hang":
                    raise fault_error(int(kind))
                hold = seconds
        status, payload, late = self.do_call(call, target, query)
        hold = max(hold, late)
        if faulty and (switches.take("http_hang_next") or api.roll(switches.get("http_hang_fraction"))):
            hold = max(hold, switches.get("http_hang_seconds"))
        if hold > 0:
            api.stopping.wait(hold)
        return status, payload

    def do_call(self, call: str, target: str, query: dict) -> tuple[int, dict, float]:
        """Do the call's work: (status, payload, seconds its own job fault holds the answer)."""
        store = self.api.store
        if call == "create":
            body = self.json_body(required=True)
            job = store.create(target, body)  # a refused create_fault (429/503) raises here, creating nothing
            resource = job.resource()
            self.api.runner.submit(job)
            fault = job.settings.create_fault
            if fault == "500" or self.api.switches.take("create_500_next"):
                raise ApiError("INTERNAL", "Internal error encountered.")
            return 200, resource, job.settings.http_hang_seconds if fault == "hang" else 0.0
        if call == "list":
            jobs, token = store.list(target, query.get("filter"), query.get("pageSize"), query.get("pageToken"))
            payload = {"batchPredictionJobs": jobs}
            if token:
                payload["nextPageToken"] = token
            return 200, payload, 0.0
        if call == "get":
            return 200, store.resource(_job_name(target)), 0.0
        if call == "cancel":
            self.json_body(required=False)
            store.cancel(_job_name(target))
            return 200, {}, 0.0
        if call == "delete":
            return 200, store.delete(_job_name(target)), 0.0
        return 200, store.operation(target), 0.0


def _too_large() -> ApiError:
    return ApiError("INVALID_ARGUMENT", f"Request payload size exceeds the limit: {MAX_BODY} bytes.")


class Server(_serving.Server):
    request_queue_size = 256

    def __init__(self, address, api: Api):
        super().__init__(address, Handler, api=api)
