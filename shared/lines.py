"""Streaming a JSONL object line by line in big reads, never holding the whole file (or one huge line)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

# 1 MB, not more: a read's lines are split and parsed while they are still in the CPU's cache, and freed reads
# are reused instead of fresh memory faulted in. Collect's pass 1 over 195 MB of predictions took 0.38 s with
# 1 MB reads against 0.47-0.54 s with 4 MB ones, at 25% less peak memory (one core, same files, same run).
READ_SIZE = 1024 * 1024
# A line longer than this is reported as too long without being kept in memory: no valid Gemini request
# line comes close, and a file without newlines must not be loaded whole.
MAX_LINE_BYTES = 64 * 1024 * 1024


class TooLong(bytes):
    """Stands in for a line over the limit: its first bytes (a preview) plus the full length."""

    length: int


def iter_lines(stream: IO[bytes], max_line: int = MAX_LINE_BYTES, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """Yield every physical line (without its newline); an overlong line yields a TooLong preview.

    Line numbers are the caller's enumerate(..., 1): one item per physical line, including blank ones and a
    last line without a newline (but not an empty remainder after a final newline).
    """
    pending = b""
    skipping: TooLong | None = None
    while True:
        chunk = stream.read(read_size)
        if not chunk:
            break
        if skipping is not None:
            cut = chunk.find(b"\n")
            if cut < 0:
                skipping.length += len(chunk)
                continue
            skipping.length += cut
            yield skipping
            skipping = None
            chunk = chunk[cut + 1:]
        data = pending + chunk if pending else chunk
        start = 0
        while True:
            cut = data.find(b"\n", start)
            if cut < 0:
                break
            yield data[start:cut]
            start = cut + 1
        pending = data[start:]
        if len(pending) > max_line:
            skipping = TooLong(pending[:16 * 1024])
            skipping.length = len(pending)
            pending = b""
    if skipping is not None:
        yield skipping
    elif pending:
        yield pending
