"""An input whose stored bytes stop being readable partway (an object stored gzip-encoded that is not gzip,
corrupt or cut short: ObjectUnreadable) ends its run like any other: the lines before the damage are validated
and sent as usual, and the rest counts as one failed row, named by the first line it leaves unread. Without
that, the same damage failed every delivery of the upload and the run never got a report."""

from __future__ import annotations

import contextlib
import io

import orjson
import pytest

from shared import submit
from shared.storage.base import ObjectUnreadable
from tests.unit.fakes import make_pipeline
from tests.unit.flows import GOOD, assert_accounting, jsonl, settle, upload


class _Damaged(io.RawIOBase):
    """The first `good` bytes of `data`, then the damage."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data, self._good, self._at = data, good, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._at >= self._good:
            read = self._data[:self._good]
            line = read.count(b"\n") + 1 + (bool(read) and not read.endswith(b"\n"))
            raise ObjectUnreadable("gs://in-bucket/incoming/z.jsonl is damaged here", line)
        end = self._good if size < 0 else min(self._good, self._at + max(1, min(size, 7)))  # small reads
        data, self._at = self._data[self._at:end], end
        return data


def _damaging(store, good: int) -> None:
    real = store.open_read

    @contextlib.contextmanager
    def open_read(bucket, name, generation=None, **kwargs):
        with real(bucket, name, generation, **kwargs) as stream:
            if name.startswith("incoming/"):
                yield _Damaged(stream.read(), good)
            else:
                yield stream

    store.open_read = open_read


@pytest.mark.parametrize(("good", "last_row"), [(0, 1), (len(GOOD % 1) + 1, 2), (len(GOOD % 1) + 10, 3)])
def test_the_lines_before_the_damage_run_and_the_rest_is_one_failed_row(good, last_row):
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=2)
    body = b"".join(GOOD % i + b"\n" for i in range(1, 7))
    _damaging(store, good)
    assert submit.handle_upload(p, upload(store, "incoming/z.jsonl", body)) == "staged"
    settle(p, vertex, publisher)
    report = assert_accounting(store, "z", list(range(1, last_row + 1)))
    errors = jsonl(store, "errors/z.jsonl")
    assert errors[-1]["row"] == last_row and errors[-1]["stage"] == "validation" and errors[-1]["line"] == ""
    assert f"line {last_row} and every line after it" in errors[-1]["message"]
    assert report["rows"]["failedByReason"]["unreadable_input"] == 1
    assert "could not be read to its end" in report["note"] and "damaged here" in report["note"]
    if last_row == 3:  # a line cut by the damage is a line like any other: here, not JSON
        assert errors[0]["row"] == 2 and report["rows"]["failedByReason"]["invalid_json"] == 1
    assert len(jsonl(store, "results/z.jsonl")) == (1 if good else 0)


def test_a_restaged_part_reads_its_rows_from_before_the_damage():
    p, store, vertex, publisher = make_pipeline(MAX_ROWS_PER_JOB=2)
    body = b"".join(GOOD % i + b"\n" for i in range(1, 7))
    _damaging(store, len(b"".join(GOOD % i + b"\n" for i in range(1, 4))))  # three whole lines, then the damage
    assert submit.handle_upload(p, upload(store, "incoming/z.jsonl", body)) == "staged"
    refused = 'Bad Request: {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "no"}}'
    for name in list(vertex.jobs):
        vertex.run(name, outcome=lambda line: refused if line["gbp_row"] == "r3" else None)
    gone = [n for n in store.list_names(p.work_bucket, "staging/") if "p0002" in n]
    assert gone
    for name in gone:  # row 3's staged part expired: its error line's request is rebuilt from the input
        store.delete(p.work_bucket, name)
    settle(p, vertex, publisher)
    assert_accounting(store, "z", [1, 2, 3, 4])
    assert sorted(r["row"] for r in jsonl(store, "results/z.jsonl")) == [1, 2]
    errors = {e["row"]: e for e in jsonl(store, "errors/z.jsonl")}
    assert errors[3]["request"] == orjson.loads(GOOD % 3)["request"] and errors[3]["stage"] == "prediction"
    assert "damaged here" in errors[4]["message"]
