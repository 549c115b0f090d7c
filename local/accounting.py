"""The row accounting every flow ends with, for the demo and `make chaos`: the one shared checker
(`shared/verify.py`), also used by the tests and `batchctl verify`, so "every row once" means the same
everywhere."""

from shared.verify import check, check_jobs, expected_rows, input_rows

__all__ = ["check", "check_jobs", "expected_rows", "input_rows"]
