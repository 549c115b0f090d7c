"""Pass 1 of collect: prediction lines become result lines and the rows that failed, in pieces that can run
side by side in worker processes.

A job's predictions files are cut into byte spans (`spans`). The lines that start inside a span are its
piece; `harvest_lines` turns them into a `Piece` (its result lines, the rows of those lines, its failed rows,
its token sums) with no I/O, so the same code runs in this process or in a worker. `Harvest` takes the
pieces in file order and gives exactly what one pass over the lines in order gives: a row exported twice
counts once, and a success wins over a failure whichever comes first, across pieces as within one.

Why workers (`shared/workers.py`): per line, collect is Python (a few microseconds a row on top of the decoding),
so one core caps it; a function with 2 vCPU gets up to twice the throughput from two processes reading their own
byte ranges.
"""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson

from shared import joining, prediction_lines
from shared import workers as workers_
from shared.lines import READ_SIZE, Prefixed, TooLong, iter_lines
from shared.rowsums import RowSums
from shared.storage.base import ObjectStore, StoreOpener
from shared.workers import discard, team_lock

__all__ = ["PIECE_BYTES", "PARALLEL_MIN_BYTES", "Harvest", "Piece", "RowSet", "Span", "harvest_lines", "pieces",
           "prepare", "span_lines", "spans"]

PIECE_BYTES = 16 * 1024 * 1024  # of predictions per piece: one ranged read (8 MB: the e2e collect ~0.6 s slower)
PARALLEL_MIN_BYTES = 48 * 1024 * 1024  # below this, starting workers costs more than they save
_LINE_SLACK = 64 * 1024  # read ahead past a span's end for its last line (a longer one is read on demand)
_RESULT_BLOCK = 1 << 20  # bytes of result lines per block of a piece


@dataclass(frozen=True, slots=True)
class Span:
    """The lines of object `name` that start at a byte offset in [start, end)."""

    name: str
    start: int
    end: int


@dataclass(slots=True)
class Piece:
    """What one span's lines gave, in line order: a row's first success (or, without one, its first failure)."""

    results: list[bytes | bytearray] = field(default_factory=list)  # the result lines, in blocks of ~1 MB
    succeeded: array = field(default_factory=lambda: array("q"))  # the row of each result line, in order
    failures: dict[int, joining.Failure] = field(default_factory=dict)
    tokens: tuple[int, int, int] = (0, 0, 0)
    unjoinable: list[str] = field(default_factory=list)  # why each line that cannot be joined was left out

    def __reduce_ex__(self, protocol: int) -> tuple:
        # The results go out of band when the pickler takes buffers (`workers.send`): not copied into the pickle.
        blocks = [pickle.PickleBuffer(b) if protocol >= 5 else bytes(b) for b in self.results]
        return _piece, (blocks, self.succeeded, self.failures, self.tokens, self.unjoinable)


def _piece(blocks: list, *rest: object) -> Piece:
    """A Piece unpickled: each block of results as bytes or a bytearray, whichever buffer it came back in."""
    return Piece([b if isinstance(b, bytes | bytearray) else bytearray(b) for b in blocks], *rest)


def spans(sizes: Iterable[tuple[str, int]], piece_bytes: int | None = None) -> list[Span]:
    """Cut objects of these sizes into spans of about `piece_bytes` (PIECE_BYTES)."""
    piece_bytes = piece_bytes or PIECE_BYTES
    out = []
    for name, size in sizes:
        start = 0
        while True:
            end = min(size, start + piece_bytes)
            out.append(Span(name, start, end))
            if end >= size:
                break
            start = end
    return out


def span_lines(stream: IO[bytes], span: Span) -> Iterator[bytes]:
    """The lines of `span` from a stream opened at byte max(start - 1, 0): a line belongs to the span it starts
    in, so a span that starts mid-line skips to the next line, and its last line may run past `end`."""
    offset = span.start
    if span.start:
        before = stream.read(1)  # the byte before the span: a newline, or the tail of a line begun earlier
        if before != b"\n":
            while True:
                block = stream.read(READ_SIZE)
                if not block:
                    return
                cut = block.find(b"\n")
                if cut >= 0:
                    offset += cut + 1
                    stream = Prefixed(block[cut + 1:], stream)
                    break
                offset += len(block)
    for raw in iter_lines(stream):
        if offset >= span.end:
            return
        offset += (raw.length if type(raw) is TooLong else len(raw)) + 1
        yield raw


def harvest_lines(lines: Iterable[bytes], attempt: int, name: str) -> Piece:
    """One piece: a result line for the first success of each row, the first failure of each row that has no
    success in these lines. Pure."""
    # Result lines are gathered in blocks and token sums kept in locals: per row, a write call took ~5 us
    # and a Counter update ~2 us, building the line ~3 us (cProfile of `batchctl postprocess`). Blocks, not a
    # list of the lines: each bytes object orjson.dumps returns keeps ~8 KB of memory whatever its length, so a
    # 16 MB piece of ~900-byte result lines held ~70 MB until joined. And blocks, not one buffer: growing a
    # 16 MB buffer copies it, and a worker briefly held twice its results.
    results: list[bytearray] = []
    block = bytearray()
    succeeded = array("q")
    first: dict[int, bool] = {}  # row -> it succeeded
    failures: dict[int, joining.Failure] = {}
    unjoinable: list[str] = []
    prompt_sum = cand_sum = total_sum = 0
    decode, success_line, classify = prediction_lines.decode_prediction, joining.success_line, joining.classify
    for raw in lines:
        if not raw.strip():
            continue
        try:
            record = decode(raw)  # a long line's request is skipped, not built
            outcome = success_line(record, attempt)  # (row, result line, tokens) of a success
            if outcome is None:
                outcome = classify(record)  # not a success: the row's Failure
        except (ValueError, TypeError, AttributeError, LookupError) as exc:
            # Not JSON orjson reads, no row id, or a key or response of a shape no result line can be made of
            # (a field that should be an object is not, a list that is an object, a token count that is not a
            # number): the line is left out, and its row counts as not come back, rather than failing the whole
            # part every time (tests/unit/test_harvest_pieces.py tries every slot with every kind of value).
            unjoinable.append(f"{name}: a prediction line cannot be joined: {exc}")
            continue
        ok = type(outcome) is tuple
        row = outcome[0] if ok else outcome.row
        done = first.get(row)
        if done is not None:
            # Exported twice (shards of a long job): count it once, and let a success win over a failure so
            # the row is not sent (and billed) again.
            if done or not ok:
                continue
            del failures[row]
        if ok:
            _, line, tokens = outcome
            first[row] = True
            block += line
            if len(block) >= _RESULT_BLOCK:
                results.append(block)
                block = bytearray()
            succeeded.append(row)
            prompt, cand, total = tokens
            prompt_sum += prompt
            cand_sum += cand
            total_sum += total
        else:
            first[row] = False
            failures[row] = outcome
    if block:
        results.append(block)
    return Piece(results, succeeded, failures, (prompt_sum, cand_sum, total_sum), unjoinable)


class RowSet:
    """A set of row numbers as a bitmap: 200,000 rows take 25 KB where a set of ints takes ~14 MB, so
    collect's memory does not grow with the output's size. Rows past `_BITMAP_ROWS` (only a malformed
    prediction line claims one) go to a plain set."""

    __slots__ = ("_bits", "_more")
    _BITMAP_ROWS = 1 << 27  # 16 MB of bitmap at most: more rows than any input Vertex takes has lines

    def __init__(self, rows: Iterable[int] = ()) -> None:
        self._bits = bytearray()
        self._more: set[int] = set()
        self.update(rows)

    def add(self, row: int) -> None:
        self.update((row,))

    def update(self, rows: Iterable[int]) -> list[int]:
        """Add `rows`; returns the indexes (in `rows`) of those the set held already.

        One loop with the bit steps inlined: collect merges every row of every piece here, on one core while
        the workers wait (a method call per row made it ~0.3 s of 200,000 rows' merge)."""
        rows = rows if isinstance(rows, list | tuple | array) else list(rows)
        bits, more, limit = self._bits, self._more, self._BITMAP_ROWS
        top = min(max(rows, default=-1), limit - 1)
        if top >= 0 and top >> 3 >= len(bits):
            bits.extend(bytes(max((top >> 3) + 1 - len(bits), len(bits))))
        present = []
        for i, row in enumerate(rows):
            if 0 <= row < limit:
                byte, mask = row >> 3, 1 << (row & 7)
                if bits[byte] & mask:
                    present.append(i)
                else:
                    bits[byte] |= mask
            elif row in more:
                present.append(i)
            else:
                more.add(row)
        return present

    def __contains__(self, row: object) -> bool:
        if type(row) is not int:
            return False
        if 0 <= row < self._BITMAP_ROWS:
            byte = row >> 3
            return byte < len(self._bits) and bool(self._bits[byte] >> (row & 7) & 1)
        return row in self._more

    def __len__(self) -> int:
        return sum(b.bit_count() for b in self._bits) + len(self._more)

    def __iter__(self) -> Iterator[int]:
        for byte, bits in enumerate(self._bits):
            if bits:
                yield from (byte * 8 + i for i in range(8) if bits >> i & 1)
        yield from sorted(self._more)

    def __eq__(self, other: object) -> bool:
        return set(self) == set(other) if isinstance(other, RowSet | set | frozenset) else NotImplemented


@dataclass
class Harvest:
    """Pieces merged in file order, as one pass over all their lines would see them."""

    write: Callable[[bytes], object]
    seen: RowSet = field(default_factory=RowSet)
    failures: dict[int, joining.Failure] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0])
    sums: RowSums = field(default_factory=RowSums)  # of the rows that succeeded

    @property
    def succeeded(self) -> int:
        return self.sums.count

    def add(self, piece: Piece) -> list[str]:
        """Merge the next piece; returns its unjoinable lines' messages (to log)."""
        seen, failures = self.seen, self.failures
        rows = piece.succeeded
        dropped = []  # rows an earlier piece already wrote a result for
        for i in seen.update(rows):  # rows an earlier piece saw (rare: exported twice)
            if failures.pop(rows[i], None) is None:  # a success wins over an earlier piece's failure
                dropped.append(i)
        blocks = piece.results
        prompt, cand, total = piece.tokens
        kept = rows
        if dropped:  # rows an earlier piece already wrote a result for (rare): their lines are left out
            lines = b"".join(blocks).split(b"\n")
            for i in dropped:
                p, c, t = joining.usage_tokens(orjson.loads(lines[i])["response"])
                prompt, cand, total = prompt - p, cand - c, total - t
            drop = set(dropped)
            blocks = [b"".join(line + b"\n" for i, line in enumerate(lines[:-1]) if i not in drop)]
            kept = [row for i, row in enumerate(rows) if i not in drop]
        for block in blocks:
            if block:
                self.write(block)
        self.sums.update(kept)
        self.tokens[0] += prompt
        self.tokens[1] += cand
        self.tokens[2] += total
        failed = list(piece.failures.items())
        held = set(seen.update([row for row, _ in failed]))  # rows seen before keep what came first
        failures.update(item for i, item in enumerate(failed) if i not in held)
        return piece.unjoinable


# --- running pieces --------------------------------------------------------------------------------------------

def _read_piece(store: ObjectStore, bucket: str, span: Span, attempt: int) -> Piece:
    # The span, its first byte's predecessor and a little of the line that runs past its end.
    with store.open_read(bucket, span.name, start=max(span.start - 1, 0),
                         length=span.end - span.start + 1 + _LINE_SLACK) as stream:
        return harvest_lines(span_lines(stream, span), attempt, span.name)


_worker_stores: dict[StoreOpener, ObjectStore] = {}


def _in_worker(opener: StoreOpener, bucket: str, span: Span, attempt: int) -> Piece:
    store = _worker_stores.get(opener)
    if store is None:  # one store (one storage client) per worker process, kept for its later pieces
        store = _worker_stores[opener] = opener()
    return _read_piece(store, bucket, span, attempt)


def pieces(store: ObjectStore, bucket: str, todo: list[Span], attempt: int, workers: int) -> Iterator[Piece]:
    """The pieces of `todo`, in order: computed by `workers` processes (`shared/workers.py`) when there are that
    many and the spans are large enough to pay for them (and the store can be opened again in a worker), else
    here."""
    size = sum(s.end - s.start for s in todo)
    opener = _parallel_opener(store, workers, size)
    # One caller at a time talks to the workers; a second collect in this instance runs here.
    if opener is None or len(todo) < 2 or not team_lock.acquire(blocking=False):
        for span in todo:
            yield _read_piece(store, bucket, span, attempt)
        return
    try:
        team = _team(workers, opener)
        yield from team.map((_in_worker, (opener, bucket, span, attempt)) for span in todo)
    except BaseException:
        discard(kill=True)  # a worker left mid-task (killed, out of memory) or is busy with an abandoned one
        raise
    finally:
        team_lock.release()


def prepare(store: ObjectStore, workers: int, size: int) -> None:
    """Start the workers that `pieces` will use for `size` bytes of output now, so that their start (~60 ms of
    imports, the first time) overlaps what the caller does before pass 1. Nothing when pass 1 will run here."""
    opener = _parallel_opener(store, workers, size)
    if opener is not None and team_lock.acquire(blocking=False):
        try:
            _team(workers, opener)
        finally:
            team_lock.release()


def _parallel_opener(store: ObjectStore, workers: int, size: int) -> StoreOpener | None:
    """How workers open `store`, when `size` bytes of output go to that many of them; None: here."""
    if workers < 2 or size < PARALLEL_MIN_BYTES:
        return None
    return store.opener()


def _team(workers: int, opener: StoreOpener) -> workers_.Team:
    """The instance's workers, with this module and the storage adapter `opener` makes loaded."""
    return workers_.team(workers, (__name__, opener.factory.__module__))
