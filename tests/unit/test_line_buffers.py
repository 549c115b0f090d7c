"""Buffers that gather many small lines hold about the lines' bytes, not orjson's work buffers.

A bytes object fresh from `orjson.dumps` keeps several KB of memory whatever its length (orjson hands back its
work buffer without shrinking it), so a list of ~600-byte lines held several times their bytes: collect's
results for 16 MB of short predictions held ~70 MB until joined. Every buffer that gathers lines (collect's
results, staging's write batch, the Cloud Storage write-behind) copies them into bytearrays instead (collect's
in blocks of ~1 MB). Each test measures with tracemalloc what such a buffer costs against the bytes it holds.
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable

import orjson
import pytest

from shared import harvest, joining, layout, staging
from shared.storage._overlap import WriteBehind
from tests.unit.fakes import make_pipeline

ROWS = 900
RESPONSE = {"candidates": [{"content": {"role": "model", "parts": [{"text": "an answer " * 40}]},
                            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 40, "totalTokenCount": 47}}


def _traced(work: Callable[[], object]) -> tuple[object, int, int]:
    """What `work` returned, and the memory it held at its end and at its peak (allocations made in it)."""
    tracemalloc.start()
    try:
        got = work()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return got, current, peak


def test_collect_results_hold_about_their_bytes():
    lines = [orjson.dumps({"status": "", "gbp_row": f"r{row}", "request": {"contents": []}, "response": RESPONSE})
             for row in range(1, ROWS + 1)]
    piece, _, peak = _traced(lambda: harvest.harvest_lines(lines, 1, "predictions.jsonl"))
    assert len(piece.succeeded) == ROWS
    size = sum(map(len, piece.results))
    assert size > ROWS * 500
    assert peak < 1.5 * size  # a list of the lines, then joined: ~4.7x


def test_the_write_behind_holds_about_the_bytes_written():
    sink = io.BytesIO()
    writer = WriteBehind(sink, chunk=64 << 20)  # nothing is handed over before finish

    def write() -> int:
        size = 0
        for row in range(1, ROWS + 1):
            size += writer.write(joining.result_line(row, True, f"key-{row}", RESPONSE, 1))
        return size

    try:
        size, held, _ = _traced(write)
        assert held < 1.5 * size  # the lines as objects: ~3.5x
    finally:
        writer.finish()
    assert sink.getvalue().count(b"\n") == ROWS


@pytest.mark.parametrize("runs", [False, True], ids=["one-by-one", "runs"])
def test_a_staging_batch_holds_about_its_bytes(runs: bool, monkeypatch: pytest.MonkeyPatch):
    if not runs:
        monkeypatch.setattr(staging.KnownShapes, "staged_run", lambda self, row, run, max_bytes: None)
    p, store, _, _ = make_pipeline()
    # Spaces after the colons: not orjson's spelling, so every line is serialised again by orjson.dumps.
    data = b"".join(b'{"key": %d, "request": {"contents": [{"role": "user", "parts": [{"text": "%b"}]}]}}\n'
                    % (row, b"a question " * 40) for row in range(1, ROWS + 1))
    generation = store.write_bytes("in-bucket", "incoming/q.jsonl", data)
    staged, _, peak = _traced(lambda: staging.stage(p, "r1", "in-bucket", "incoming/q.jsonl", generation))
    assert staged.total == ROWS and not staged.failed
    written = len(store.read_bytes(p.work_bucket, layout.staged_name("r1", layout.part_id(1, 1))))
    assert written < staging._WRITE_BATCH  # one batch: it is all held until the writer closes
    # The batch as a list of lines: ~9.6x. A run staged at once also holds, while it is staged, its bytes, their
    # pieces and its staged lines: a few times RUN_BYTES at most, whatever the input's size.
    assert peak < 3 * written + (4 * staging.RUN_BYTES if runs else 0)
