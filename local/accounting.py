"""The row accounting every flow ends with, for the demo, `make chaos` and the load bursts: the one shared checker
(`shared/verify.py`), also used by the tests and `batchctl verify`, so "every row once" means the same
everywhere."""

from local.cloud import vertex_jobs
from shared.verify import check, check_jobs, expected_rows, input_rows

__all__ = ["PIPELINE_LABEL", "check", "check_books", "check_jobs", "expected_rows", "input_rows"]

# The label on the pipeline's Vertex jobs: `Config.pipeline_label`, which the local cloud leaves at its default.
PIPELINE_LABEL = "gemini-batch-pipeline"


def check_books(env, outbound, name: str, expected: list[int], report: dict) -> tuple[list[str], list[dict]]:
    """The problems of one reported file, its rows (`check`) then one Vertex job per part (`check_jobs`), and its
    run's Vertex jobs. A missing results or errors file raises `NotFound` (the demo, which says so, checks alone)."""
    results = outbound.blob(f"results/{name}.jsonl").download_as_bytes()
    errors = outbound.blob(f"errors/{name}.jsonl").download_as_bytes()
    jobs = vertex_jobs(env, pipeline=PIPELINE_LABEL, run=report["run"])
    return check(name, expected, report, results, errors) + check_jobs(name, report, jobs), jobs
