"""A Vertex-format predictions file made from staged lines, as a batch job would write it.

Every staged line comes back once, in shuffled order (Vertex does not keep input order), with Vertex's
`status` and `processed_time` beside the echoed fields; a share of the rows (5% by default) comes back failed
(half quota errors, half bad requests), the rest with a model response. Lines are read again through their
offsets, so a 1 GB file is shuffled without holding it.

Lines are spelled as the official output lines of the Vertex reference are: a space after every comma and colon
between values, the request echo's and the response's keys in sorted order. The local Vertex emulator writes
compact lines (orjson's); a reader parses either, but whitespace is bytes to go through, so collect is measured
on the spelling it meets in the cloud.

    python -m bench.predictions STAGED... --out PREDICTIONS [--staged-out SUBSET --mb N] [--failed 0.05]

With `--mb`, only the first staged lines that make about N MB of predictions are used, and `--staged-out`
receives exactly those staged lines (the part the predictions answer).
"""

from __future__ import annotations

import argparse
import mmap
import random
from pathlib import Path

import orjson

from shared import known_shapes

_TEXT = ("The quarterly report shows steady growth in three regions, with sales up eleven percent. "
         "Überblick: costs held flat; the outlook is «prudent» and the team expects a naïve model to do well. ")
_FAILURES = (
    'Bad Request: {"error": {"code": 400, "message": "Request contains an invalid argument.", '
    '"status": "INVALID_ARGUMENT"}}',
    'Too Many Requests: {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", '
    '"status": "RESOURCE_EXHAUSTED"}}',
)


def _response(rnd: random.Random, row: int) -> dict:
    words = rnd.randint(20, 90)
    prompt, cand = rnd.randint(800, 1600), words * 2
    return {"candidates": [{"avgLogprobs": -0.41 - row % 97 / 1000,
                            "content": {"parts": [{"text": f"Row {row}. " + _TEXT[: words * 4]}], "role": "model"},
                            "finishReason": "STOP"}],
            "createTime": "2026-11-21T10:00:00.123456Z", "modelVersion": "gemini-2.5-flash-001",
            "responseId": f"resp-{row:08x}",
            "usageMetadata": {"candidatesTokenCount": cand, "promptTokenCount": prompt,
                              "totalTokenCount": prompt + cand, "trafficType": "ON_DEMAND"}}


_SEP = b"\x02"  # joins the pieces between strings: orjson escapes every control character, so none is in its output


def spaced(compact: bytes) -> bytes:
    """JSON as orjson writes it, with a space after every comma and colon between values (the separators of
    Python's `json.dumps`). The strings stay as they were: the line is split at its quotes with its escaped
    backslashes and quotes set aside as validation sets them aside (`shared/known_shapes.py`), and only the pieces
    between strings get spaces."""
    pieces = (known_shapes._set_aside(compact, unicode=False) or compact).split(b'"')
    pieces[::2] = _SEP.join(pieces[::2]).replace(b",", b", ").replace(b":", b": ").split(_SEP)
    return known_shapes._put_back(b'"'.join(pieces))


def write(staged: list[Path], out: Path, *, staged_out: Path | None = None, mb: float | None = None,
          failed: float = 0.05, seed: int = 11) -> tuple[int, int]:
    """Write the predictions (and the staged subset they answer). Returns (rows, failed rows)."""
    rnd = random.Random(seed)
    limit = int(mb * 1e6) if mb else None
    maps, spans = [], []  # (file index, start, end) of every staged line used
    size = 0
    with open(staged_out, "wb") if staged_out else open("/dev/null", "wb") as subset:
        for n, path in enumerate(staged):
            with open(path, "rb") as f:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
            maps.append(m)
            start = 0
            while start < len(m) and (limit is None or size < limit):
                end = m.find(b"\n", start)
                end = len(m) if end < 0 else end
                if end > start:
                    spans.append((n, start, end))
                    subset.write(m[start:end + 1].rstrip(b"\n") + b"\n")
                    size += int((end - start) * 1.0) + 700  # about what a response line adds
                start = end + 1
    rnd.shuffle(spans)
    bad = 0
    with open(out, "wb") as sink:
        for n, start, end in spans:
            record = orjson.loads(maps[n][start:end])
            row = int(record["gbp_row"][1:])
            if "request" in record:  # echoed with its keys sorted, as the reference's failed line shows it
                record["request"] = orjson.loads(orjson.dumps(record["request"], option=orjson.OPT_SORT_KEYS))
            if rnd.random() < failed:
                bad += 1
                record = {"status": _FAILURES[row % 2], "processed_time": "2026-11-21T10:00:01.5+00:00", **record}
            else:
                record = {"status": "", "processed_time": "2026-11-21T10:00:01.5+00:00", **record,
                          "response": _response(rnd, row)}
            sink.write(spaced(orjson.dumps(record)) + b"\n")
    return len(spans), bad


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("staged", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--staged-out", type=Path)
    parser.add_argument("--mb", type=float)
    parser.add_argument("--failed", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    rows, bad = write(args.staged, args.out, staged_out=args.staged_out, mb=args.mb, failed=args.failed,
                      seed=args.seed)
    print(f"{args.out}: {rows} rows, {bad} failed")


if __name__ == "__main__":
    main()
