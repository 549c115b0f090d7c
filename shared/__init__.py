"""The functions' own library: a pure core (validation, splitting, joining, run state, reports) and narrow
adapters for Cloud Storage, Pub/Sub and Vertex AI, so the same core runs in the cloud, on the local cloud and
in unit tests."""
