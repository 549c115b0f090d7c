"""The proxy's request handler: limits and faults first, then the call streamed to the storage.

One call goes through these steps, in this order:
1. admin calls (`/emulator/v1/...`, see `_state`) are answered here, never limited, delayed or failed;
2. `latency_ms` is waited;
3. the dice (`random_429`, then `random_503`, one throw) may answer without forwarding anything;
   a request to an open resumable upload session then goes to `_resumable`, which keeps the chunks itself and
   takes its commit through the steps below with the whole object in one request;
4. a mutation (see `_routes`) of an object name with no token left is answered 429 with GCS's body and not
   forwarded; for a multipart upload the name is first read from the body's metadata part;
5. a compose or rewrite with `ifGenerationMatch` (and a resumable commit with a precondition given at its
   start) is answered 412 when the object is at another generation (the storage behind ignores those
   preconditions; Cloud Storage does not);
6. the call is forwarded with its body streamed; a committed mutation may then be hit by `commit_then_503`
   (the client gets 503, the object is written) or `commit_then_hang` (the answer is held `hang_seconds`);
7. the answer is streamed back (`_relay`).
A refused call's body is read and dropped (up to `DRAIN_LIMIT`, else the connection is closed), so a keep-alive
connection never takes body bytes for its next request.
"""

from __future__ import annotations

import http.client
import logging
import re
from urllib.parse import parse_qsl, quote, urlsplit

import orjson

from local import _serving
from local.gcs_limits import _errors
from local.gcs_limits._ledger import Outcome
from local.gcs_limits._relay import Stored, finish, relay
from local.gcs_limits._resumable import media_upload_type, session_request
from local.gcs_limits._routes import ADMIN, Call, Kind, classify, first_part_name, json_name, multipart_boundary
from local.gcs_limits._routes import upload_id_of as _upload_id_of
from local.gcs_limits._state import Limits
from local.gcs_limits._uploads import CONDITIONS
from local.gcs_limits._wire import HOP, BackendError, BodyError, ClientGone, RequestBody, generation

log = logging.getLogger("local.gcs_limits")

PEEK_LIMIT = 1024 * 1024  # how far into a multipart body the object's metadata part is looked for
DRAIN_LIMIT = 64 * 1024 * 1024  # a refused body up to this is read and dropped; a longer one closes the connection
_MUTATING = (Kind.MUTATION, Kind.MULTIPART)


class Handler(_serving.Handler):
    server_version = "GcsLimits/1.0"
    access_log = log
    limits: Limits  # set on the subclass the server builds

    def do_GET(self):
        self.serve("GET")

    def do_HEAD(self):
        self.serve("HEAD")

    def do_POST(self):
        self.serve("POST")

    def do_PUT(self):
        self.serve("PUT")

    def do_PATCH(self):
        self.serve("PATCH")

    def do_DELETE(self):
        self.serve("DELETE")

    def do_OPTIONS(self):
        self.serve("OPTIONS")

    # --- answers made here --------------------------------------------------------------------------
    def answer(self, status: int, payload: bytes, *, close: bool = False, reason: str | None = None,
               headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer from the proxy itself: a JSON body in GCS's shape, or nothing (a 308 of an upload session)."""
        try:
            self.send_response(status, reason)
            for name, value in headers:
                self.send_header(name, value)
            if payload:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            if close or self.close_connection or self.limits.stopping.is_set():
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, oversized headers) in GCS's JSON shape too."""
        self.answer(code, _errors.bad_request(message or "Bad request.", code), close=True)

    def refuse(self, body: RequestBody, status: int, payload: bytes, **kw) -> None:
        """Answer without forwarding, after dropping what the client sends (or closing when it is too much)."""
        self.drop_body(body)
        self.answer(status, payload, **kw)

    def drop_body(self, body: RequestBody) -> None:
        """Read and drop a request body that will not be forwarded; a longer one than DRAIN_LIMIT closes the
        connection instead (its rest is never read)."""
        if not body.drain(DRAIN_LIMIT):
            self.close_connection = True

    # --- one call -----------------------------------------------------------------------------------
    def serve(self, method: str) -> None:
        try:
            body = RequestBody(self.rfile, self.headers)
        except BodyError as exc:
            self.answer(exc.code, _errors.bad_request(str(exc), exc.code), close=True)
            return
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            call = classify(method, parts.path, query)
            if call.kind is Kind.ADMIN:
                raw = body.read_small()
                if raw is None:
                    self.answer(400, _errors.bad_request("Admin bodies are small JSON objects."), close=True)
                else:
                    self.answer(*self.limits.admin(method, parts.path[len(ADMIN):], raw))
            else:
                self.proxy(method, call, query, body)
        except ClientGone as exc:
            log.debug("client gone during %s %s: %s", method, self.path, exc)
            self.close_connection = True
        except BodyError as exc:
            self.answer(exc.code, _errors.bad_request(str(exc), exc.code), close=True)
        except Exception:
            log.exception("unexpected error answering %s %s", method, self.path)
            self.answer(500, _errors.body(500, "Internal error in the proxy.", "backendError"), close=True)

    def proxy(self, method: str, call: Call, query: dict, body: RequestBody) -> None:
        limits, switches = self.limits, self.limits.switches.snapshot()
        limits.ledger.request()
        if switches["latency_ms"] > 0 and limits.stopping.wait(switches["latency_ms"] / 1000.0):
            self.refuse(body, 503, _errors.unavailable())  # stopping
            return
        key = _key(call.bucket, call.name)
        roll = limits.draw() if switches["random_429"] or switches["random_503"] else 1.0
        if roll < switches["random_429"]:
            limits.ledger.record(Outcome.RANDOM_429, key)
            self.refuse(body, 429, _errors.random_429())
            return
        if roll < switches["random_429"] + switches["random_503"]:
            limits.ledger.record(Outcome.RANDOM_503, key)
            self.refuse(body, 503, _errors.unavailable())
            return
        if call.kind is Kind.RESUMABLE_PUT:
            session_request(self, method, call, query, body, switches)  # answered by the proxy (`_resumable`)
            return

        replay: bytes | None = None
        if call.kind is Kind.MULTIPART:
            boundary = multipart_boundary(self.headers.get("Content-Type"))
            if boundary:
                head = body.peek_until(PEEK_LIMIT, lambda h: first_part_name(h, boundary)[0])
                key = _key(call.bucket, first_part_name(head, boundary)[1] or call.name)
        elif call.kind is Kind.RESUMABLE_START:
            replay = body.read_small()
            key = _key(call.bucket, (json_name(replay) if replay else None) or call.name)
        mutation = key is not None and call.kind in _MUTATING

        fault = None
        if mutation:
            if not self.admit(key, switches, body):
                return
            fault = self.commit_fault(switches)

        if replay is None:
            replay = body.read_small()
        fenced = mutation and "ifGenerationMatch" in query and _DESTINATION.match(urlsplit(self.path).path)
        source = single_source(self.path, query, replay) if method == "POST" else None

        def send():
            if source is not None:  # a compose of one object: sent as a rewrite of it
                return self.compose_as_rewrite(source, replay)
            return self.forward(method, body, replay)

        try:
            if fenced:
                with limits.fence(key):  # check and write as one step, like the real service
                    if generation(limits.backend, call.bucket, call.name) != query["ifGenerationMatch"]:
                        self.refuse(body, 412, _errors.precondition_failed())
                        return
                    conn, resp = send()
            else:
                conn, resp = send()
        except BackendError as exc:
            log.warning("storage did not answer %s %s: %s", method, self.path, exc)
            self.answer(502, _errors.bad_gateway(str(exc)), close=not body.done)
            return
        if mutation:
            limits.ledger.record(Outcome.WRITE, key)
            if resp.status >= 400:
                limits.ledger.record(Outcome.WRITE_REFUSED, key)
        if call.kind is Kind.RESUMABLE_START and key and resp.status < 300:
            upload_id = _upload_id_of(resp.getheader("Location"))
            if upload_id:
                limits.uploads.open(upload_id, key, {k: query[k] for k in CONDITIONS if k in query},
                                    media_upload_type(replay, query, self.headers.get("X-Upload-Content-Type")))
        self.deliver(method, query, conn, resp, key, fault, switches)

    # --- steps shared with resumable sessions (`_resumable`) -----------------------------------------
    def admit(self, key: str, switches: dict, body: RequestBody) -> bool:
        """Spend a token of `key` for a mutation; without one, answer GCS's 429 (nothing forwarded) and say so."""
        limits = self.limits
        if limits.limiter.admit(key, switches["rate_per_object"], switches["burst"]):
            return True
        limits.ledger.record(Outcome.REJECTED_429, key)
        bucket, _, name = key.partition("/")
        self.refuse(body, 429, _errors.object_rate_limited(bucket, name))
        return False

    def commit_fault(self, switches: dict) -> Outcome | None:
        """The dice for a mutation that will be forwarded: lose its reply (503), hold it, or neither."""
        if not (switches["commit_then_503"] or switches["commit_then_hang"]):
            return None
        roll = self.limits.draw()
        if roll < switches["commit_then_503"]:
            return Outcome.COMMITTED_503
        if roll < switches["commit_then_503"] + switches["commit_then_hang"]:
            return Outcome.COMMITTED_HANG
        return None

    def deliver(self, method: str, query: dict, conn, resp, key: str | None, fault: Outcome | None,
                switches: dict) -> None:
        """Answer with the storage's `resp`, unless a commit fault replaces it (503) or holds it first."""
        if resp.status >= 300:
            fault = None  # nothing was committed: the storage's own answer goes back
        if fault is Outcome.COMMITTED_503:
            self.limits.ledger.record(fault, key)
            finish(self.limits.backend, conn, resp, drop=True)
            self.answer(503, _errors.unavailable())
            return
        if fault is Outcome.COMMITTED_HANG:
            self.limits.ledger.record(fault, key)
            self.limits.stopping.wait(switches["hang_seconds"])
        relay(self, method, query, conn, resp)

    def compose_as_rewrite(self, source: str, replay: bytes):
        """A compose of the one object `source` into this request's destination, sent to the storage as a rewrite
        of it (with the compose's destination resource as the rewrite's); the rewrite's `resource` is answered,
        as a compose answers its object. (None, the answer read whole) or BackendError.

        fake-gcs-server composes by concatenating and hashing again: one 178 MB source took it 0.7-0.9 s and 1.0-1.4
        CPU-s, where a rewrite of it takes 0.25 s (the same object and checksums); Cloud Storage composes without
        copying the bytes."""
        bucket, destination = self.path.split("?", 1)[0].removesuffix("/compose").split("/o/", 1)
        wanted = orjson.loads(replay).get("destination") or {}
        resource = {k: wanted[k] for k in ("contentType", "metadata") if k in wanted}
        path = f"{bucket}/o/{quote(source, safe='')}/rewriteTo{bucket.removeprefix('/storage/v1')}/o/{destination}"
        conn, resp = self.forward("POST", None, orjson.dumps(resource), path=path)
        stored = Stored.read(resp)
        finish(self.limits.backend, conn, resp)
        if stored.status == 200:
            body = orjson.dumps(orjson.loads(stored.body)["resource"])
            headers = [(k, v) for k, v in stored.headers if k.lower() != "content-length"]
            stored = Stored(200, stored.reason, [*headers, ("Content-Length", str(len(body)))], body)
        return None, stored.response()

    def forward(self, method: str, body: RequestBody | None, replay: bytes | None, *, path: str | None = None):
        """Send the request to the storage: (connection, response with its headers read); to `path` instead of
        the request's own when given (its query then is the request's).

        Only a request whose whole body is in hand (`replay`) takes a pooled connection; if the storage has closed
        it meanwhile, the request fails before any answer and is sent again on a new one. Otherwise BackendError.
        """
        if path is not None:
            split = urlsplit(self.path)
            path = path + (f"?{split.query}" if split.query else "")
        backend = self.limits.backend
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP]
        headers.append(("Host", backend.netloc))
        if replay is not None:
            if replay or method in ("POST", "PUT", "PATCH"):
                headers.append(("Content-Length", str(len(replay))))
        elif body.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", str(body.length)))
        while True:
            conn, reused = backend.acquire(pooled=replay is not None)
            try:
                conn.putrequest(method, path or self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if replay is not None:
                    conn.endheaders(replay or None)
                else:
                    conn.endheaders()
                    _stream(conn, body)
                return conn, conn.getresponse()
            except ClientGone:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and replay is not None:
                    continue  # a stale pooled connection; the body is in hand: send it again
                raise BackendError(f"{type(exc).__name__}: {exc}") from exc


_DESTINATION = re.compile(r"^/storage/v1/b/[^/]+/o/.+/(?:compose|rewriteTo/b/[^/]+/o/.+|copyTo/b/[^/]+/o/.+)$")
_COMPOSE_PATH = re.compile(r"^/storage/v1/b/[^/]+/o/.+/compose$")
# What a compose may carry and still be sent as a rewrite: preconditions on the destination (the proxy checks
# ifGenerationMatch itself) and the destination resource's content type and custom metadata.
_REWRITE_QUERY = {"ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch",
                  "prettyPrint"}
_REWRITE_DESTINATION = {"contentType", "metadata", "name", "bucket", "kind"}


def single_source(path: str, query: dict, body: bytes | None) -> str | None:
    """The one source object of a compose request that a rewrite of it can stand for, else None: a compose of
    several objects, of a source generation or with a source precondition, or with a destination field or query
    parameter a rewrite would not carry the same way, goes to the storage as it is."""
    if not _COMPOSE_PATH.match(urlsplit(path).path) or set(query) - _REWRITE_QUERY or not body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or set(doc) - {"sourceObjects", "destination", "kind"}:
        return None
    sources, destination = doc.get("sourceObjects"), doc.get("destination") or {}
    if not isinstance(sources, list) or len(sources) != 1 or not isinstance(sources[0], dict):
        return None
    source = {k: v for k, v in sources[0].items() if v is not None}  # the client sends "generation": null
    if set(source) != {"name"} or not isinstance(source["name"], str) or not source["name"]:
        return None
    if not isinstance(destination, dict) or set(destination) - _REWRITE_DESTINATION:
        return None
    return source["name"]


def _key(bucket: str | None, name: str | None) -> str | None:
    """`bucket/name`, the key of one object's limit and counters; None when the call names no object."""
    return f"{bucket}/{name}" if bucket is not None and name else None


def _stream(conn, body: RequestBody) -> None:
    while True:
        piece = body.read()
        if body.chunked:
            conn.send(b"%x\r\n%b\r\n" % (len(piece), piece) if piece else b"0\r\n\r\n")
        elif piece:
            conn.send(piece)
        if not piece:
            return
