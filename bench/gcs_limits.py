"""The cost of the GCS limits proxy: per-call overhead and streaming throughput, direct vs through the proxy.

Everything is measured in one run against one fake-gcs-server, so the ratios hold across machines even when
the absolute numbers do not. The rate limit is off (`rate_per_object=0`) so only the proxy's own cost shows.

    python -m bench.gcs_limits [--mb 200] [--calls 2000] [--threads 16] [--in-process]

By default the proxy runs as its own process (`python -m local.gcs_limits`), as the local cloud runs it; with
`--in-process` it shares this process (and its GIL) with the measuring clients, as in the functional tests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import threading
import time
from urllib.parse import urlsplit

from bench._servers import spawn, stop
from local import gcs
from local.gcs_limits import start_server

BUCKET = "bench"


def _conn(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)


def _call(conn, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
    return data


def per_call(url: str, calls: int) -> dict:
    """Sequential metadata GETs on one keep-alive connection: median and p99 in milliseconds."""
    conn = _conn(url)
    for _ in range(50):
        _call(conn, "GET", f"/storage/v1/b/{BUCKET}/o/small")
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        _call(conn, "GET", f"/storage/v1/b/{BUCKET}/o/small")
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    times.sort()
    return {"median_ms": round(statistics.median(times), 3), "p99_ms": round(times[int(len(times) * 0.99)], 3)}


def concurrent(url: str, threads: int, calls: int) -> float:
    """Metadata GETs per second from `threads` keep-alive clients at once."""
    per = max(1, calls // threads)

    def run():
        conn = _conn(url)
        for _ in range(per):
            _call(conn, "GET", f"/storage/v1/b/{BUCKET}/o/small")
        conn.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return round(per * threads / (time.perf_counter() - t0))


def download(url: str, size: int) -> float:
    """MB/s of one `alt=media` download of the big object, read in 1 MiB pieces and dropped."""
    conn = _conn(url)
    t0 = time.perf_counter()
    conn.request("GET", f"/storage/v1/b/{BUCKET}/o/big?alt=media")
    resp = conn.getresponse()
    got = 0
    while piece := resp.read(1 << 20):
        got += len(piece)
    seconds = time.perf_counter() - t0
    conn.close()
    if got != size:
        raise RuntimeError(f"downloaded {got} bytes of {size}")
    return round(size / seconds / 1e6, 1)


class _Sink:
    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)


def client_download(url: str, size: int) -> float:
    """MB/s of one download of the big object by google-cloud-storage (checksum checked), into a sink."""
    from shared.storage.gcs import make_client

    client = make_client("bench", endpoint=url)
    sink = _Sink()
    t0 = time.perf_counter()
    client.bucket(BUCKET).blob("big").download_to_file(sink)
    seconds = time.perf_counter() - t0
    if sink.size != size:
        raise RuntimeError(f"downloaded {sink.size} bytes of {size}")
    return round(size / seconds / 1e6, 1)


def upload(url: str, data: bytes, name: str) -> float:
    """MB/s of one media upload of `data`."""
    conn = _conn(url)
    t0 = time.perf_counter()
    _call(conn, "POST", f"/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}", body=data,
          headers={"Content-Type": "application/octet-stream"})
    seconds = time.perf_counter() - t0
    conn.close()
    return round(len(data) / seconds / 1e6, 1)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the object downloaded and uploaded")
    parser.add_argument("--calls", type=int, default=2000, help="metadata calls per measurement")
    parser.add_argument("--threads", type=int, default=16, help="concurrent clients")
    parser.add_argument("--in-process", action="store_true", help="run the proxy in this process")
    args = parser.parse_args(argv)
    fake = gcs.start()
    proxy = process = None
    try:
        if args.in_process:
            proxy = start_server(fake.url, rate_per_object=0)
            proxy_url = proxy.url
        else:
            process, proxy_url = spawn(["local.gcs_limits", "--backend", fake.url, "--rate-per-object", "0"])
        conn = _conn(fake.url)
        _call(conn, "POST", "/storage/v1/b?project=bench", body=json.dumps({"name": BUCKET}).encode(),
              headers={"Content-Type": "application/json"})
        _call(conn, "POST", f"/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name=small", body=b"x" * 100)
        conn.close()
        size = args.mb * 1024 * 1024
        data = os.urandom(1 << 20) * args.mb
        results = {"object_mb": args.mb}
        results["upload_mb_s"] = {"direct": upload(fake.url, data, "big"), "proxy": upload(proxy_url, data, "big2")}
        del data
        results["per_call"] = {"direct": per_call(fake.url, args.calls), "proxy": per_call(proxy_url, args.calls)}
        results["concurrent_calls_s"] = {"threads": args.threads,
                                         "direct": concurrent(fake.url, args.threads, args.calls),
                                         "proxy": concurrent(proxy_url, args.threads, args.calls)}
        results["download_mb_s"] = {"direct": max(download(fake.url, size) for _ in range(3)),
                                    "proxy": max(download(proxy_url, size) for _ in range(3))}
        results["client_download_mb_s"] = {"direct": max(client_download(fake.url, size) for _ in range(3)),
                                           "proxy": max(client_download(proxy_url, size) for _ in range(3))}
        results["proxy"] = "in-process" if proxy else "own process"
        if process:
            results["proxy_peak_rss_mb"] = round(_rss_mb(process.pid), 1)
        print(json.dumps(results, indent=2))
    finally:
        if proxy:
            proxy.stop()
        stop(process)
        fake.stop()


if __name__ == "__main__":
    main()
