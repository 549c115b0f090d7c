"""`python -m local.gcs_limits` as its own process: URL on stdout, switches from flags and env, clean SIGTERM,
exit 2 on a taken port; and memory that stays flat while a large object streams through."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.functional.gcs_limits._support import admin, make_client

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
MB = 1024 * 1024


def start(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "local.gcs_limits", *args], cwd=ROOT, env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise AssertionError((url, proc.communicate(timeout=10)))
    return proc, url


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    finally:
        proc.stdout.close()
        proc.stderr.close()


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak) of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def test_the_process_prints_its_url_takes_switches_from_flags_and_env_and_stops_on_sigterm(raw_gcs):
    env = {**ENV, "GCS_LIMITS_BURST": "5", "GCS_LIMITS_LATENCY_MS": "2", "GCS_LIMITS_BACKEND": raw_gcs.url}
    proc, url = start("--rate-per-object", "2", "--latency-ms", "1", env=env)
    try:
        status, switches = admin(url, "GET", "/switches")
        assert status == 200 and (switches["rate_per_object"], switches["burst"], switches["latency_ms"]) == (2, 5, 1)
        bucket = make_client(url).create_bucket(f"sa-{uuid.uuid4().hex[:10]}")
        bucket.blob("a").upload_from_string(b"via the process")
        assert bucket.blob("a").download_as_bytes() == b"via the process"
    finally:
        assert stop(proc) == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 1):
        pass


def test_a_taken_port_exits_2_with_one_line(raw_gcs):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "local.gcs_limits", "--backend", raw_gcs.url,
                               "--port", str(port)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("args", [["--burst", "0.5"], ["--commit-then-503", "often"], [],
                                  ["--backend", "ftp://127.0.0.1:1"]])
def test_a_bad_flag_or_a_missing_backend_exits_2(raw_gcs, args):
    if args and args[0] != "--backend":
        args = ["--backend", raw_gcs.url, *args]
    env = {k: v for k, v in ENV.items() if k != "GCS_LIMITS_BACKEND"}
    proc = subprocess.run([sys.executable, "-m", "local.gcs_limits", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr


def test_memory_stays_flat_while_50_mb_stream_up_and_down_through_the_proxy(raw_gcs):
    size = 50 * MB
    data = os.urandom(MB) * 50
    proc, url = start("--backend", raw_gcs.url)
    try:
        bucket = make_client(url).create_bucket(f"mem-{uuid.uuid4().hex[:10]}")
        bucket.blob("warm").upload_from_string(b"x")
        bucket.blob("warm").download_as_bytes()
        before = memory_kb(proc.pid)

        blob = bucket.blob("big.bin")
        blob.upload_from_string(data)  # one resumable session request of 50 MB
        after_upload = memory_kb(proc.pid)

        seen = 0
        with bucket.blob("big.bin").open("rb", chunk_size=8 * MB) as reader:
            while piece := reader.read(MB):
                assert piece == data[seen:seen + len(piece)]
                seen += len(piece)
        assert seen == size
        whole = bucket.blob("big.bin").download_as_bytes()  # one request for the whole object
        assert whole == data
        after_download = memory_kb(proc.pid)
    finally:
        assert stop(proc) == 0
    grown_mb = (after_download["VmHWM"] - before["VmRSS"]) / 1024
    assert grown_mb < 10, (before, after_upload, after_download)
