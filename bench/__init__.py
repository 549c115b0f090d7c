"""Benchmarks of the pipeline's hot paths (`make bench`), reported side by side as ratios to a baseline."""
