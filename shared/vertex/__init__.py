"""Vertex AI batch prediction behind a narrow interface (create, find by label, list, get, cancel)."""

from shared.vertex.base import TERMINAL_STATES, JobInfo, VertexJobs

__all__ = ["TERMINAL_STATES", "JobInfo", "VertexJobs"]
