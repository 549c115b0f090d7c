"""The local cloud: real local servers standing in for Cloud Storage, Pub/Sub and Vertex AI."""
