"""Sidecars: the `.cls` and `.json` files that travel beside an image or video (same key) and say
what it shows, which camera took it and when."""

from __future__ import annotations

import datetime as dt
import json


def utc(t: dt.datetime) -> dt.datetime:
    """A time in UTC; one without a zone is taken to be UTC."""
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def sidecar_context(meta_text: str | None, time_key: str) -> tuple[str | None, dt.datetime | None]:
    """(camera, time) from a .json sidecar: its "camera" and its `time_key` (ISO 8601): "timestamp"
    for an image (when it was taken), "start" for a video (when the recording began). Either is
    None when absent or unreadable."""
    try:
        meta = json.loads(meta_text) if meta_text else None
    except ValueError:
        return None, None
    if not isinstance(meta, dict):
        return None, None
    camera = str(meta["camera"]) if meta.get("camera") is not None else None
    try:
        when = utc(dt.datetime.fromisoformat(str(meta[time_key]).replace("Z", "+00:00"))) if meta.get(time_key) else None
    except ValueError:
        when = None
    return camera, when


def label_of(record: dict, label_field: str | None = None) -> str | None:
    """A sample's class name: its .cls text, or the key `label_field` of its .json sidecar; without
    either, for a loose image one folder below the listing's root (a class-folder tree, as `recog
    crops` writes and `recog shards` packs), that folder's name."""
    if label_field is None:
        key = record.get("key") or ""
        folder = key.split("/")[0] if record.get("shard") is None and key.count("/") == 1 else None
        return record.get("cls") or folder
    try:
        value = json.loads(record["meta"]).get(label_field) if record.get("meta") else None
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)
