"""The Vertex emulator's job execution, byte for byte: importer decisions, row answers and output shards.

Every scenario runs one job through the emulator's own runner (`_JobRun`) over an in-memory Storage
double, then records what a client could see: the final state, error, stats, and every output shard
(processed_time normalised; its format is checked). The record of each scenario must equal
`tests/fixtures/vertex/rows.json`, which was written by the emulator before its per-row work was made
cheaper, so the faster code provably outputs and decides the same. A deliberate change of the output
re-records it: `python -m tests.unit.test_vertex_rows --record` (done when the model's answers became a table of
sentences and a large shard's lines were dealt into stripes; every decision, failure line and count was compared
with the recording before and found the same).

The inputs are awkward on purpose: escapes, floats orjson rewrites, sibling keys named like output
fields, every row failure, retryable rows, several files with blank lines, inputs past the small-input
limit (streamed twice), every job fault, and importer rejections late in files whose earlier lines all
share one shape.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from local.vertex._gcs import ObjectMissing
from local.vertex._runner import _JobRun
from local.vertex._store import WAITING, JobStore
from local.vertex._switches import Switches

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "vertex" / "rows.json"
PARENT = "projects/p/locations/us-central1"
PROCESSED = re.compile(rb'"processed_time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00)"')
INLINE_LIMIT = 16_000  # shards up to this size are recorded whole, larger ones by digest


class MemoryStorage:
    """The emulator's Storage adapter over a dict: the same line splitting, no network."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = dict(objects)
        self.buckets = {"in", "out"}

    def bucket_exists(self, name: str) -> bool:
        return name in self.buckets

    def object_exists(self, uri: str) -> bool:
        return uri in self.objects

    def iter_lines(self, uri: str):
        for lines in self.iter_blocks(uri):
            yield from lines

    def iter_blocks(self, uri: str):
        """The lines in lists of seven, so that chunks end within an input too."""
        if uri not in self.objects:
            raise ObjectMissing(uri)
        lines = self.objects[uri].split(b"\n")
        if not lines[-1]:
            lines.pop()
        for at in range(0, len(lines), 7):
            yield lines[at:at + 7]

    def write(self, uri: str, data: bytes) -> None:
        self.objects[uri] = data


def _request(text: str, **extra) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def _jsonl(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


AWKWARD = [
    {"custom_id": "plain", "request": _request("Why is the sky blue?")},
    {"custom_id": "unicode", "request": _request("Überprüfe naïve café — 日本語 😀 text\nwith\ttabs")},
    b'{"custom_id":"escapes","request":{"contents":[{"role":"user","parts":[{"text":'
    b'"caf\\u00e9 \\"q\\" \\/ \\\\"}]}]}}',
    b'{"custom_id":"floats","request":{"contents":[{"parts":[{"text":"n"}]}],"generationConfig":'
    b'{"temperature":1E0,"topP":0.50,"topK":4e1,"maxOutputTokens":64.0}},"big":123456789012345678901234567890}',
    b'{"custom_id":"spaces" , "request" : {"contents" : [ {"parts":[{"text":"  lots   of   space  "}]} ]}}  \r',
    {"custom_id": "siblings", "status": "mine", "processed_time": "mine", "response": {"mine": 1},
     "request": _request("Sibling keys named like output fields"), "meta": {"n": 1, "tags": ["a", None]}},
    {"request": _request("no id at all, nulls around", systemInstruction=None), "custom_id": None},
    {"custom_id": "system", "request": {"systemInstruction": {"parts": [{"text": "Be brief."}]},
                                        "contents": [{"role": "user", "parts": [{"text": "Hi"}]},
                                                     {"role": "model", "parts": [{"text": "Hello"}]},
                                                     {"role": "user", "parts": [{"text": "More " * 40}]}]}},
    {"custom_id": "system_snake", "request": {"system_instruction": {"parts": [{"text": "Snake case."}]},
                                              "contents": [{"parts": [{"text": "x"}]}],
                                              "generation_config": {"max_output_tokens": 2}}},
    {"custom_id": "json", "request": _request("Name a colour",
                                              generationConfig={"responseMimeType": "application/json"})},
    {"custom_id": "json_capped", "request": _request("Name a colour", generationConfig={
        "responseMimeType": "application/json", "maxOutputTokens": 3})},
    {"custom_id": "capped", "request": _request("Tell me a long story", generationConfig={"maxOutputTokens": 1})},
    {"custom_id": "file", "request": {"contents": [{"role": "user", "parts": [
        {"fileData": {"fileUri": "gs://in/img/cat.jpg", "mimeType": "image/jpeg"}}, {"text": "what?"}]}]}},
    {"custom_id": "file_snake", "request": {"contents": [{"parts": [
        {"file_data": {"file_uri": "gs://in/img/cat.jpg", "mime_type": "image/jpeg"}}]}]}},
    {"custom_id": "file_missing", "request": {"contents": [{"parts": [
        {"fileData": {"fileUri": "gs://in/img/dog.jpg", "mimeType": "image/jpeg"}}]}]}},
    {"custom_id": "file_http", "request": {"contents": [{"parts": [
        {"fileData": {"fileUri": "https://example.com/a.png", "mimeType": "image/png"}}]}]}},
    {"custom_id": "file_empty", "request": {"contents": [{"parts": [{"fileData": {"fileUri": ""}}]}]}},
    {"custom_id": "inline", "request": {"contents": [{"parts": [{"inlineData": {"data": "AAAA", "mimeType": "x"}},
                                                                 {"inline_data": {"data": "BB"}}]}]}},
    {"custom_id": "inline_empty", "request": {"contents": [{"parts": [{"inlineData": {"mimeType": "x"}}]}]}},
    {"custom_id": "function", "request": {"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}},
    {"custom_id": "no_data", "request": {"contents": [{"parts": [{"thought": True}]}]}},
    {"custom_id": "bad_role", "request": {"contents": [{"role": "tester", "parts": [{"text": "x"}]}]}},
    {"custom_id": "no_contents", "request": {"contents": []}},
    {"custom_id": "null_contents", "request": {"contents": None}},
    {"custom_id": "no_parts", "request": {"contents": [{"role": "user", "parts": []}]}},
    {"custom_id": "empty_text", "request": {"contents": [{"role": "user", "parts": [{"text": ""}]}]}},
    {"custom_id": "zero_tokens", "request": _request("x", generationConfig={"maxOutputTokens": 0})},
    {"custom_id": "half_tokens", "request": _request("x", generationConfig={"maxOutputTokens": 2.5})},
    {"custom_id": "no_request"},
    {"custom_id": "null_request", "request": None},
    {"custom_id": "multi_text", "request": {"contents": [{"parts": [{"text": "one"}, {"text": "two three"}]}]}},
    {"custom_id": "long_topic", "request": _request("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 " + "x" * 300)},
]

ROWS_ONLY_SHAPES = [  # lines the importer accepts only one at a time (their types clash with AWKWARD's)
    [{"custom_id": "parts_object", "request": {"contents": [{"role": "user", "parts": {"text": "x"}}]}}],
    [{"custom_id": "contents_object", "request": {"contents": {"parts": []}}}],
    [{"custom_id": "content_string", "request": {"contents": ["hello"]}}],
    [{"custom_id": "part_string", "request": {"contents": [{"parts": ["hello"]}]}}],
    [{"custom_id": "text_number", "request": {"contents": [{"parts": [{"text": 5}]}]}}],
    [{"custom_id": "config_string", "request": {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": "x"}}],
    [{"custom_id": "tokens_true", "request": _request("x", generationConfig={"maxOutputTokens": True})}],
    [{"custom_id": "tokens_text", "request": _request("x", generationConfig={"maxOutputTokens": "many"})}],
    [{"custom_id": "request_list", "request": [1, 2]}],
    [{"custom_id": "request_text", "request": "hello"}],
]


def _many(n: int, width: int, prefix: str = "r") -> bytes:
    return b"".join(json.dumps({"custom_id": f"{prefix}{i}", "request": _request(f"Item {i}: " + "word " * width)},
                               separators=(",", ":")).encode() + b"\n" for i in range(n))


def _late(bad_line: bytes, n: int = 300) -> bytes:
    """n lines of one shape, then one that breaks a rule: the importer meets it only at line n + 1."""
    return _many(n, 3) + bad_line + b"\n" + _many(5, 3, prefix="after")


IMPORT_REJECTIONS = {
    "not_json": _late(b'{"custom_id": "x", "request": '),
    "not_object": _late(b"[1, 2]"),
    "empty_struct": _late(b'{"custom_id": "x", "request": {"contents": [{"parts": [{}]}]}}'),
    "empty_root": _late(b"{}"),
    "bad_key": _late(b'{"custom_id": "x", "bad key": 1}'),
    "dollar_key": _late(b'{"custom_id": "x", "request": {"$defs": 1}}'),
    "type_change": _late(b'{"custom_id": 7, "request": {"contents": [{"parts": [{"text": "x"}]}]}}'),
    "numeric_string": _jsonl({"custom_id": "000000", "request": _request("a")},
                             {"custom_id": "abc", "request": _request("b")}),
    "numeric_escape": _late(b'{"custom_id": "\\u0031\\u0032", "request": {"contents": [{"parts": [{"text": "x"}]}]}}'),
    "long_numeric": _jsonl({"id": "1" * 60}, {"id": "x"}),
    "float_string_then_bool": _jsonl({"id": "2.5"}, {"id": 3}, {"id": True}),
    "array_elements": _late(b'{"custom_id": "x", "request": {"contents": [{"parts": [{"text": "x"}, {"text": 1}]}]}}'),
    "array_vs_object": _jsonl({"a": [1]}, {"a": {"b": 1}}),
    "too_deep": _jsonl(json.loads("{" + "".join(f'"k{i}": {{' for i in range(15)) + '"v": 1' + "}" * 16)),
    "deep_ok": _jsonl(json.loads("{" + "".join(f'"k{i}": {{' for i in range(14)) + '"v": 1' + "}" * 15)),
    "deep_arrays_ok": _jsonl({"a": json.loads("[" * 18 + "1" + "]" * 18)},
                             {"a": json.loads("[" * 18 + "2, null" + "]" * 18)}),
    "nulls_fit": _jsonl({"a": None, "b": [None]}, {"a": 1, "b": ["x"]}, {"a": None, "b": None}, {"a": 2.5, "b": []}),
    "braces_in_text": _jsonl({"id": "x", "t": "{}"}, {"id": "y", "t": "{ }"}, {"id": "{}", "t": "z"}),
    "duplicate_keys": _late(b'{"custom_id": "x", "custom_id": 5, "request": {"contents": []}}'),
    "duplicate_keys_ok": _late(b'{"custom_id": 5, "custom_id": "x", "request": {"contents": []}}'),
    "keyword_keys": _jsonl({"class": 1, "from": "x", "_": True}, {"class": 2.5, "from": None, "_": False}),
    "new_key_each_line": b"".join(json.dumps({f"k{i}": i, "common": "x"}).encode() + b"\n" for i in range(60))
                         + b'{"k3": "three"}\n',
    "surrogate": _late(b'{"custom_id": "\\ud800", "request": {"contents": [{"parts": [{"text": "x"}]}]}}'),
    "bad_utf8": _late(b'{"custom_id": "\xff", "request": {"contents": [{"parts": [{"text": "x"}]}]}}'),
    "infinity": _late(b'{"custom_id": "x", "n": 1e400}'),
    "nan": _late(b'{"custom_id": "x", "n": NaN}'),
    "trailing": _late(b'{"custom_id": "x"} x'),
    "newline_key": _jsonl({"a": 1}, {"a\n": 2}, {"a": 3}, {"a\n": "x"}),
    "only_blank": b"\n  \n\t\n",
}


def _scenarios() -> dict[str, tuple[dict[str, bytes], dict[str, str], list[str] | None]]:
    """name -> (objects by URI, job labels, input URIs; None: every `*.jsonl` object, in name order)."""
    cat = {"gs://in/img/cat.jpg": b"\xff\xd8jpeg"}
    awkward = _jsonl(*AWKWARD)
    out = {
        "awkward": ({"gs://in/a.jsonl": awkward, **cat}, {}, None),
        "awkward_shards_retryable": ({"gs://in/a.jsonl": awkward, **cat},
                                     {"emulator_export_every": "4", "emulator_retryable_fraction": "0-35"}, None),
        "retryable_codes": ({"gs://in/a.jsonl": _many(40, 2)},
                            {"emulator_retryable_fraction": "0-5", "emulator_retryable_codes": "504-429"}, None),
        "files_and_blank_lines": ({"gs://in/a.jsonl": b"\n" + _many(5, 1) + b"   \n\r\n",
                                   "gs://in/b.jsonl": b"\t\n",
                                   "gs://in/c.jsonl": _many(4, 2, prefix="c").rstrip(b"\n")},
                                  {"emulator_export_every": "3"}, None),
        "streamed_twice": ({"gs://in/a.jsonl": _many(2500, 20)}, {"emulator_export_every": "1000"}, None),
        "missing_input": ({}, {}, ["gs://in/a.jsonl"]),
        "missing_second_input": ({"gs://in/a.jsonl": _many(3, 1)}, {}, ["gs://in/a.jsonl", "gs://in/b.jsonl"]),
        "missing_bucket": ({"gs://in/a.jsonl": _many(3, 1)}, {}, ["gs://nobucket/a.jsonl"]),
        "empty_input": ({"gs://in/a.jsonl": b""}, {}, None),
    }
    for i, rows in enumerate(ROWS_ONLY_SHAPES):
        out[f"row_shape_{i}"] = ({"gs://in/a.jsonl": _jsonl(*rows)}, {}, None)
    for fault, at in (("partial", "0-5"), ("fail", "0-3"), ("cancel", "0-6"), ("expire", "0-4"), ("fail", "0"),
                      ("partial", "1")):
        out[f"fault_{fault}_{at}"] = ({"gs://in/a.jsonl": _many(23, 1)}, {
            "emulator_job_fault": fault, "emulator_fault_at": at, "emulator_export_every": "5"}, None)
    out["fault_permission"] = ({"gs://in/a.jsonl": _many(3, 1)}, {"emulator_job_fault": "permission"}, None)
    for name, data in IMPORT_REJECTIONS.items():
        out[f"import_{name}"] = ({"gs://in/a.jsonl": data}, {}, None)
    return out


def _run(objects: dict[str, bytes], labels: dict[str, str], uris: list[str] | None, pool=None,
         storage: MemoryStorage | None = None) -> dict:
    """The job's record; `pool`: the emulator's answer processes (`local.vertex._answers.AnswerPool`), None: rows
    answered in the job's thread; `storage`: one holding `objects` (None: a MemoryStorage)."""
    storage = storage or MemoryStorage(objects)
    store = JobStore(Switches(), seed=0)
    uris = uris or sorted(u for u in objects if u.endswith(".jsonl"))
    job = store.create(PARENT, {
        "displayName": "rows", "model": "publishers/google/models/gemini-2.5-flash",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": uris}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://out/o"}},
        "labels": labels})
    assert store.transition(job, "JOB_STATE_RUNNING", only_from=WAITING)
    runner = SimpleNamespace(_store=store, _storage=storage, _stopping=False, _stop_event=threading.Event(), pool=pool)
    _JobRun(runner, job).run()
    shards = {}
    for uri, data in sorted(storage.objects.items()):
        if not uri.startswith(job.output_dir + "/"):
            continue
        stamps = PROCESSED.findall(data)
        assert len(stamps) == data.count(b"\n"), "every line has a processed_time in Vertex's format"
        data = PROCESSED.sub(b'"processed_time":"T"', data)
        name = uri[len(job.output_dir) + 1:]
        shards[name] = data.decode() if len(data) <= INLINE_LIMIT else {
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "lines": data.count(b"\n")}
    error = job.error and {**job.error, "message": job.error["message"].replace(job.output_dir, "<output dir>")}
    return {"state": job.state, "error": error, "stats": job.stats, "shards": shards}


def _record_all() -> dict:
    return {name: _run(*scenario) for name, scenario in _scenarios().items()}


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_the_scenarios_are_the_recorded_ones(golden):
    assert sorted(golden) == sorted(_scenarios())


@pytest.mark.parametrize("name", sorted(_scenarios()))
def test_a_job_outputs_and_decides_what_was_recorded(golden, name):
    assert _run(*_scenarios()[name]) == golden[name]


class FailingWrites(MemoryStorage):
    """Refuses the `fail_at`-th write (0: the first) and every write after it."""

    def __init__(self, objects: dict[str, bytes], fail_at: int):
        super().__init__(objects)
        self.fail_at, self.writes = fail_at, 0

    def write(self, uri: str, data: bytes) -> None:
        self.writes += 1
        if self.writes > self.fail_at:
            raise OSError("storage refused the write")
        super().write(uri, data)


@pytest.mark.parametrize("fault", [None, "partial", "cancel"])
@pytest.mark.parametrize("fail_at", range(5))
def test_a_failed_export_fails_the_job_with_the_shards_before_it(fail_at, fault):
    """A refused upload ends the job FAILED with the export error, its stats those of the shards that landed, and no
    shard after it written, whichever shard it is (the last one, or one a fault or a cancel exports, included)."""
    labels = {"emulator_export_every": "5"}
    if fault:
        labels |= {"emulator_job_fault": fault, "emulator_fault_at": "0-7"}
    objects = {"gs://in/a.jsonl": _many(23, 1)}  # 5 shards of 5, 5, 5, 5, 3 rows; a fault exports at row 16
    shard_rows = [5, 5, 5, 1] if fault else [5, 5, 5, 5, 3]
    storage = FailingWrites(objects, fail_at)
    record = _run(objects, labels, None, storage=storage)
    if fail_at >= len(shard_rows):
        assert record["state"] != "JOB_STATE_FAILED"
        return
    landed = sum(shard_rows[:fail_at])
    assert record["state"] == "JOB_STATE_FAILED"
    assert record["error"] == {"code": 13, "message": "Failed to export data. Retrying may solve the problem."}
    assert record["stats"]["successfulCount"] + record["stats"]["failedCount"] == landed
    assert len(record["shards"]) == fail_at and storage.writes == fail_at + 1
    assert sum(shard.count("\n") for shard in record["shards"].values()) == landed


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python -m tests.unit.test_vertex_rows --record")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(_record_all(), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
