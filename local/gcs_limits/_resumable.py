"""Requests to a resumable upload session, answered by the proxy: chunks are kept, the commit is one write.

The session was opened by its start request, which went to the storage as any call does (its answer carries the
session URL). Every later request of the session comes here once latency and the dice have passed it:
- a chunk is spooled (`_uploads.Session`) and answered 308 with the bytes held; a status query is answered the
  same way. Neither reaches the storage, spends a token or counts as a write, as before;
- the request that carries the last byte is the mutation: it spends a token of the session's object (over the
  rate: 429, its bytes not kept, so the client sends them again), throws the commit-fault dice, is spooled, and
  then, holding the object's fence, the proxy checks the preconditions given at the session's start and sends
  the whole object to the storage's session in one PUT. The storage's answer (or the proxy's 412) is counted as
  before (`writes`, `writesRefused`), kept as the session's answer, and delivered through the commit faults;
- a storage that does not answer, or answers 5xx, leaves the session open with its bytes: the client may send
  its last request again.
The one write goes to the storage's own session, which keeps what the start request set (custom metadata, ACL
parameters...) exactly as the storage recorded it; the storage ignores preconditions on resumable uploads, which is
why the proxy checks them at the commit, where Cloud Storage does. When the start set nothing but the object's name
and content type (every upload of the pipeline's client), the write is a media upload instead: fake-gcs-server
answers it with the same object resource, and takes a 184 MB object in 0.35-0.55 s and 0.4-0.7 CPU-s where a PUT
to its session takes 1.2-1.7 s and about 2 CPU-s (the same machine, the same run). The storage's session is then
left unused, as an abandoned upload is.
"""

from __future__ import annotations

import http.client
import logging
from urllib.parse import quote

import orjson

from local.gcs_limits import _errors
from local.gcs_limits._ledger import Outcome
from local.gcs_limits._relay import Stored, finish
from local.gcs_limits._uploads import BUSY_SECONDS, CONDITIONS, Session, Step, content_range_of, plan, range_header
from local.gcs_limits._wire import HOP, BackendError, generation

log = logging.getLogger("local.gcs_limits")


def session_request(handler, method: str, call, query: dict, body, switches: dict) -> None:
    """Answer one request to an upload session (`call.upload_id`); `handler` is the proxy's request handler."""
    uploads = handler.limits.uploads
    session = uploads.get(call.upload_id)
    if session is None:
        handler.refuse(body, 404, _errors.no_upload_session())
        return
    if not session.lock.acquire(timeout=BUSY_SECONDS):  # another request of this session is still running
        handler.refuse(body, 503, _errors.unavailable())
        return
    try:
        settled = _locked(handler, method, session, body, switches)
    finally:
        uploads.touch(session)
        session.lock.release()
    if settled is not None:  # the commit's answer, delivered after the lock: a held answer must not block retries
        stored, fault = settled
        handler.deliver(method, query, None, stored.response(), session.key, fault, switches)


def _locked(handler, method: str, session: Session, body, switches: dict) -> tuple[Stored, Outcome | None] | None:
    """Serve the request while holding the session; returns the answer still to deliver, or None if answered."""
    if session.gone:
        handler.refuse(body, 404, _errors.no_upload_session())
        return None
    if session.answer is not None:  # committed: every later request learns the outcome
        handler.drop_body(body)
        return session.answer, None
    if method == "DELETE":
        handler.limits.uploads.cancel(session)
        handler.refuse(body, 499, _errors.upload_cancelled(), reason="Client Closed Request")
        return None
    if method not in ("PUT", "POST"):
        handler.refuse(body, 405, _errors.body(405, f"{method} is not allowed on an upload session.",
                                              "methodNotAllowed"))
        return None

    step = plan(session.held, session.total, handler.headers.get("Content-Range"),
                None if body.chunked else body.length)
    if step.step is Step.INVALID:
        handler.refuse(body, 400, _errors.bad_request(step.error))
        return None
    if step.step is Step.STATUS:
        handler.refuse(body, 308, b"", **_incomplete(session))
        return None
    if step.step is Step.APPEND:
        if not session.take(body, step.skip, step.expect):
            handler.answer(400, _errors.bad_request("The body's length differs from its Content-Range."))
            return None
        session.total = step.total
        handler.answer(308, b"", **_incomplete(session))
        return None

    key = session.key  # the commit: a mutation of the session's object
    if not handler.admit(key, switches, body):
        return None  # 429; the last bytes are not kept, the client sends them again
    fault = handler.commit_fault(switches)
    if not session.take(body, step.skip, step.expect):
        handler.answer(400, _errors.bad_request("The body's length differs from its Content-Range."))
        return None
    total = step.total if step.total is not None else session.held
    if session.held != total:  # a whole-object request shorter than the bytes already held
        handler.answer(400, _errors.bad_request(f"The object size {total} is less than the {session.held} bytes "
                                                f"received."))
        return None
    try:
        with handler.limits.fence(key):  # the check and the write as one step, as Cloud Storage commits
            if _conditions_hold(handler, key, session.conditions):
                stored = _write_object(handler, session, total)
            else:
                stored = Stored.own(412, "Precondition Failed", _errors.precondition_failed())
    except BackendError as exc:
        log.warning("storage did not answer the commit of upload %s: %s", session.upload_id, exc)
        handler.answer(502, _errors.bad_gateway(str(exc)))
        return None
    handler.limits.ledger.record(Outcome.WRITE, key)
    if stored.status >= 400:
        handler.limits.ledger.record(Outcome.WRITE_REFUSED, key)
    if stored.status < 500:
        session.finish(stored)  # settled, written or refused for good: the bytes go, the answer stays
    return stored, fault


def _incomplete(session: Session) -> dict:
    """The keywords of a 308: Cloud Storage's reason and, once bytes are held, their Range."""
    held = range_header(session.held)
    return {"reason": "Resume Incomplete", "headers": (("Range", held),) if held else ()}


def _conditions_hold(handler, key: str, conditions: dict[str, str]) -> bool:
    """Whether the object meets the preconditions given at the session's start (Cloud Storage's meaning:
    generation 0 is "no live object"; ifGenerationNotMatch fails when there is none)."""
    if not conditions:
        return True
    bucket, _, name = key.partition("/")
    current = generation(handler.limits.backend, bucket, name)
    match, not_match = conditions.get("ifGenerationMatch"), conditions.get("ifGenerationNotMatch")
    if match is not None and current != match:
        return False
    return not_match is None or (current != "0" and current != not_match)


def media_upload_type(start_body: bytes | None, query: dict, upload_type: str | None) -> str | None:
    """The content type of a session whose commit can be a media upload: its start request named the object
    and its content type, nothing more (no custom metadata, ACL or other parameter a media upload cannot carry).
    None: the commit goes to the storage's own session."""
    if set(query) - {"uploadType", "name", *CONDITIONS}:
        return None
    try:
        resource = orjson.loads(start_body) if start_body else {}
    except ValueError:
        return None
    if not isinstance(resource, dict) or set(resource) - {"name", "contentType"}:
        return None
    given = {t for t in (resource.get("contentType"), upload_type) if t}
    return given.pop() if len(given) == 1 and isinstance(next(iter(given)), str) else None


def _write_object(handler, session: Session, total: int) -> Stored:
    """The whole object in one write to the storage (a media upload, or a PUT to the storage's session with the
    request's own headers and its Content-Range made whole); the storage's answer read whole. BackendError when
    the storage does not answer."""
    backend = handler.limits.backend
    kept = [(k, v) for k, v in handler.headers.items()
            if k.lower() not in HOP and k.lower() not in ("content-range", "content-type")]
    if session.media_type is not None:
        bucket, _, name = session.key.partition("/")
        method = "POST"
        path = f"/upload/storage/v1/b/{quote(bucket, safe='')}/o?uploadType=media&name={quote(name, safe='')}"
        headers = kept + [("Content-Type", session.media_type)]
    else:
        method, path = "PUT", handler.path
        headers = kept + [(k, v) for k, v in handler.headers.items() if k.lower() == "content-type"]
        headers.append(("Content-Range", content_range_of(total)))
    headers += [("Host", backend.netloc), ("Content-Length", str(total))]
    conn, _ = backend.acquire(pooled=False)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        session.send(conn.sock)
        resp = conn.getresponse()
        stored = Stored.read(resp)
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise BackendError(f"{type(exc).__name__}: {exc}") from exc
    finish(backend, conn, resp)
    if session.media_type is not None and stored.status == 200 and total:
        stored.headers.append(("Range", range_header(total)))  # what the storage's session would have answered
    return stored
