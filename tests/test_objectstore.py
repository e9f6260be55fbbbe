import os
import stat

import psutil

from recog.objectstore import EmbeddedStore, load_or_create_credentials


def test_store_listens_on_loopback_only(store):
    conns = [c for c in psutil.Process(store._proc.pid).net_connections(kind="tcp") if c.status == "LISTEN"]
    assert conns and {c.laddr.ip for c in conns} == {"127.0.0.1"}


def test_credentials_are_private_and_stable(tmp_path):
    first = load_or_create_credentials(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "credentials.env").st_mode) == 0o600
    assert load_or_create_credentials(tmp_path) == first
    assert first.secret_key not in (tmp_path / "credentials.env").name


def test_a_second_store_starts_beside_the_first_and_stops(store, tmp_path):
    with EmbeddedStore(tmp_path / "second") as other:
        assert other.running and other.s3_port != store.s3_port
        pid = other._proc.pid
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_second_server_on_the_same_directory_is_refused_clearly(store):
    import pytest

    from recog.objectstore import StoreError

    with pytest.raises(StoreError, match="already running in another process"):
        EmbeddedStore(store.data_dir).start()
    assert store.running
