"""Object storage behind a narrow interface: the core never imports google-cloud-storage directly."""

from shared.storage.base import ObjectStore, Versioned, change_json, mutate_json

__all__ = ["ObjectStore", "Versioned", "change_json", "mutate_json"]
