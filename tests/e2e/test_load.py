"""Load on the rate-limited local Cloud Storage: a burst of files dropped at once and one large file, then both
again with the storage's faults on (writes that commit but answer 503, random 429 and 503). Every file is
reported with exact row accounting and one Vertex job per part, the job cap is never exceeded, and no object
is written more than once a second on average over any 10 s window. `make soak` runs the full scale."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.cloud import LocalCloud
from local.load import burst, make_file

CAP = 4
ENV = {"MAX_ROWS_PER_JOB": "5000", "MAX_ACTIVE_JOBS": str(CAP), "MAX_CREATES_PER_MINUTE": "1000",
       "MODEL": "gemini-2.5-flash"}
FAULTS = {"commit_then_503": 0.05, "random_429": 0.02, "random_503": 0.02}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(Path(tmp_path_factory.mktemp("load")), function_env=ENV, tick_seconds=0.5,
                    vertex_args=["--run-latency=0.5"]) as running:
        yield running


def _assert_kept_every_promise(outcome) -> None:
    assert not outcome.problems, "\n".join(outcome.problems[:20])
    assert outcome.reported == outcome.files and outcome.peak_active_jobs <= CAP
    busiest, writes = outcome.busiest
    assert writes <= 10, f"{busiest} was written {writes} times within 10 s"


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "storage-faults"])
def test_a_burst_of_files_dropped_at_once(cloud, faults):
    cloud.storage_switches(**(FAULTS if faults else {k: 0 for k in FAULTS}))
    files = {f"f{i:02d}": make_file(i, 600, bad_every=97) for i in range(24)}
    outcome = burst(cloud, files, timeout=240, prefix=f"burst-{int(faults)}/", cap=CAP)
    cloud.storage_switches(**{k: 0 for k in FAULTS})
    _assert_kept_every_promise(outcome)
    if faults:
        injected = outcome.storage["totals"]
        assert injected.get("committed503", 0) + injected.get("random429", 0) + injected.get("random503", 0) > 0


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "storage-faults"])
def test_a_large_file_in_several_parts(cloud, faults):
    cloud.storage_switches(**(FAULTS if faults else {k: 0 for k in FAULTS}))
    outcome = burst(cloud, {"big": make_file(0, 20_000, bad_every=1000)}, timeout=240,
                    prefix=f"big-{int(faults)}/", cap=CAP)
    cloud.storage_switches(**{k: 0 for k in FAULTS})
    _assert_kept_every_promise(outcome)
    assert outcome.jobs >= 4
