"""`python -m local.vertex` as its own process: URL on stdout, switches from flags and env, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.vertex._support import create, http, make_client, rows, state, upload_jsonl, wait_done

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[3]


def test_standalone_process(fake_gcs, bucket, prefix):
    env = {**os.environ, "STORAGE_EMULATOR_HOST": fake_gcs.url, "VERTEX_EMULATOR_RUN_LATENCY": "0.05",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.vertex", "--host", "127.0.0.1", "--port", "0", "--workers", "2",
         "--http-error-code", "429", "--models", "gemini-*"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() is not None else "")
        status, switches = http(f"{url}/emulator/v1/switches")
        assert status == 200 and switches["run_latency"] == 0.05 and switches["http_error_code"] == 429
        assert switches["models"] == ["gemini-*"]
        client = make_client(url)
        job = create(client, upload_jsonl(bucket, "in.jsonl", rows(3)), prefix, model="gemini-9-ultra")
        done = wait_done(client, job.name)
        assert state(done) == "JOB_STATE_SUCCEEDED" and done.completion_stats.successful_count == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 1):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_bad_flag_value_exits_2():
    proc = subprocess.run([sys.executable, "-m", "local.vertex", "--run-latency", "soon"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "run_latency" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("name", ["PORT", "WORKERS", "SEED", "ANSWER_PROCESSES"])
def test_a_bad_number_in_the_environment_exits_2_naming_its_flag(name: str):
    proc = subprocess.run([sys.executable, "-m", "local.vertex"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), f"VERTEX_EMULATOR_{name}": "many"}, timeout=30)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert f"--{name.lower().replace('_', '-')}: invalid int value: 'many'" in proc.stderr


def test_port_in_use_exits_2_with_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "local.vertex", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                              timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
