"""Shared fixtures: a real SeaweedFS server and a real local Ray, started once per test session.

Unit tests (tests/test_<module>.py, one per module of recog) run first; the tests in
tests/integration/ run the real chain (object store + Ray), are marked `integration`, and run last.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest

from recog.objectstore import EmbeddedStore
from recog.storage import StorageOptions

REPO = Path(__file__).resolve().parents[1]
# Jobs name a log file for Ray's own messages; the tests' go to a temporary folder, not the checkout.
os.environ.setdefault("RECOG_LOG_DIR", tempfile.mkdtemp(prefix="recog-test-logs-"))
SHARED_DATA = Path(os.environ.get("RECOG_SHARED_DATA", REPO.parent / "shared" / "data"))


INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items):
    for item in items:
        if INTEGRATION in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "photos" / "labels.csv").exists():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> EmbeddedStore:
    """A SeaweedFS S3 server on 127.0.0.1; this process (and the Ray it starts) uses its credentials."""
    with EmbeddedStore(tmp_path_factory.mktemp("store")) as s:
        os.environ.update(s.env())
        yield s


@pytest.fixture(scope="session")
def opts(store) -> StorageOptions:
    return StorageOptions.from_env()


@pytest.fixture
def bucket(store, opts) -> str:
    """A fresh bucket URI (s3://...) for one test."""
    import pyarrow.fs as pafs

    name = "t-" + secrets.token_hex(4)
    pafs.S3FileSystem(endpoint_override=store.endpoint_url, scheme="http", region="us-east-1",
                      allow_bucket_creation=True).create_dir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(store):
    """A local Ray with this machine's CPUs, started after the store so workers inherit its env."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def joined_env(ray_local) -> dict:
    """The environment for a `recog` job run in a subprocess that joins the session's Ray (and its
    store) instead of starting a Ray of its own: seconds saved per job."""
    return {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
