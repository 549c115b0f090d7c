"""Clients bound to a running local cloud, built from its `env` without touching os.environ (tests share it)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Mapping


def pubsub_clients(env: Mapping[str, str]):
    """(publisher, subscriber) for a running local cloud's `env`."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    host = env["PUBSUB_EMULATOR_HOST"]
    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)))
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))
    return publisher, subscriber


def storage_client(env: Mapping[str, str]):
    """A google-cloud-storage client for a running local cloud's `env`, from the project's one factory."""
    from shared.storage.gcs import make_client

    return make_client(env["GOOGLE_CLOUD_PROJECT"], endpoint=env["STORAGE_EMULATOR_HOST"])


def vertex_jobs(env: Mapping[str, str], **labels: str) -> list[dict]:
    """Every batch prediction job carrying these labels, straight from the Vertex emulator's REST list."""
    flt = " AND ".join(f'labels.{k}="{v}"' for k, v in sorted(labels.items()))
    base = (f"{env['VERTEX_BASE_URL']}/v1/projects/{env['GOOGLE_CLOUD_PROJECT']}/locations/"
            f"{env['GOOGLE_CLOUD_LOCATION']}/batchPredictionJobs")
    jobs: list[dict] = []
    token = ""
    while True:
        query = urllib.parse.urlencode({"filter": flt, "pageSize": 1000, "pageToken": token})
        with urllib.request.urlopen(f"{base}?{query}", timeout=30) as answer:
            page = json.load(answer)
        jobs += page.get("batchPredictionJobs", [])
        token = page.get("nextPageToken")
        if not token:
            return jobs
