import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from recog import storage
from recog.storage import StorageError, StorageOptions


def test_write_list_read_round_trip(bucket, opts):
    storage.write_bytes(f"{bucket}/in/b.jpg", b"B", opts)
    storage.write_bytes(f"{bucket}/in/sub/a.jpg", b"AA", opts)
    files = storage.list_files(f"{bucket}/in/", opts)
    assert [(f.uri, f.size) for f in files] == [(f"{bucket}/in/b.jpg", 1), (f"{bucket}/in/sub/a.jpg", 2)]
    assert storage.list_files(f"{bucket}/in/sub/a.jpg", opts)[0].size == 2  # one object lists itself
    assert storage.read_bytes(f"{bucket}/in/sub/a.jpg", opts) == b"AA"
    assert storage.list_files(f"{bucket}/nothing/", opts) == []


def test_local_paths_work_the_same(tmp_path):
    opts = StorageOptions()
    storage.write_bytes(str(tmp_path / "x" / "a.bin"), b"123", opts)
    assert [f.size for f in storage.list_files(str(tmp_path), opts)] == [3]
    assert not list(tmp_path.glob("x/*.tmp-*"))  # the temporary file was renamed into place


@pytest.mark.parametrize("where", ["s3", "local"])
def test_of_writers_racing_for_a_new_object_exactly_one_writes_it(where, request, tmp_path):
    base, opts = (request.getfixturevalue("bucket"), request.getfixturevalue("opts")) if where == "s3" else (str(tmp_path), StorageOptions())
    uri, start = f"{base}/log/0.json", threading.Barrier(4)

    def write(i: int) -> bool:
        start.wait()
        return storage.write_new(uri, f"writer {i}".encode(), opts)

    with ThreadPoolExecutor(4) as pool:
        won = list(pool.map(write, range(4)))
    assert won.count(True) == 1 and storage.read_bytes(uri, opts) == f"writer {won.index(True)}".encode()
    assert [f.uri.rsplit("/", 1)[-1] for f in storage.list_files(f"{base}/log/", opts)] == ["0.json"]  # no leftovers


def test_wrong_secret_says_which_variable_to_fix(bucket, opts, monkeypatch):
    storage.write_bytes(f"{bucket}/in/a.jpg", b"A", opts)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StorageError, match="AWS_SECRET_ACCESS_KEY.*SIGNATURE_DOES_NOT_MATCH"):
        storage.check_access(f"{bucket}/in/", f"{bucket}/out/", opts)


def test_unknown_access_key_says_which_variable_to_fix(bucket, opts, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        storage.check_access(f"{bucket}/in/", f"{bucket}/out/", opts)


def test_missing_bucket_and_empty_prefix(bucket, opts):
    with pytest.raises(StorageError, match="bucket does not exist"):
        storage.check_access("s3://no-such-bucket-here/in/", f"{bucket}/out/", opts)
    with pytest.raises(StorageError, match="nothing there to read"):
        storage.check_access(f"{bucket}/empty/", f"{bucket}/out/", opts)


def test_unreachable_endpoint_fails_in_seconds_not_minutes():
    opts = StorageOptions(endpoint_url="http://127.0.0.1:9", region="us-east-1")
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach the store"):
        storage.check_access("s3://b/in/", "s3://b/out/", opts)
    assert time.monotonic() - t0 < 30  # one attempt per request, not the long-job retry budget


def test_endpoint_and_region_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert StorageOptions.from_env() == StorageOptions("http://minio:9000", "us-east-1")
    assert StorageOptions.from_env("http://other:1").endpoint_url == "http://other:1"


def test_an_input_list_names_the_files(bucket, opts):
    for name in ("cam-1/a.mp4", "cam-2/b.mp4", "cam-2/c.mp4"):
        storage.write_bytes(f"{bucket}/v/{name}", b"x", opts)
    storage.write_bytes(f"{bucket}/lists/nov.txt", f"# November\n{bucket}/v/cam-1/a.mp4\n\n{bucket}/v/cam-2/b.mp4\n".encode(), opts)
    files = storage.check_access(f"{bucket}/lists/nov.txt", f"{bucket}/out", opts, input_list=True)
    assert [f.uri for f in files] == [f"{bucket}/v/cam-1/a.mp4", f"{bucket}/v/cam-2/b.mp4"]
    assert storage.common_root([f.uri for f in files]) == f"{bucket}/v"
    storage.write_bytes(f"{bucket}/lists/bad.txt", f"{bucket}/v/cam-9/gone.mp4\n".encode(), opts)
    with pytest.raises(StorageError, match="1 listed file.s. do not exist, e.g. .*gone.mp4"):
        storage.check_access(f"{bucket}/lists/bad.txt", f"{bucket}/out", opts, input_list=True)


def test_braces_and_wildcards_select_files(bucket, opts):
    for name in ("train-000.tar", "train-001.tar", "train-002.tar", "val-000.tar", "val-001.tar", "notes.txt"):
        storage.write_bytes(f"{bucket}/ds/{name}", b"t", opts)
    def names(pattern):
        return [f.uri.rsplit("/", 1)[-1] for f in storage.list_files(f"{bucket}/ds/{pattern}", opts)]

    assert names("train-{000..001}.tar") == ["train-000.tar", "train-001.tar"]
    assert names("val-*.tar") == ["val-000.tar", "val-001.tar"]
    assert names("{train,val}-00[2-9].tar") == ["train-002.tar"]
    assert names("train-{005..009}.tar") == []
    assert storage.expand_braces("a{1..3}{x,y}") == ["a1x", "a1y", "a2x", "a2y", "a3x", "a3y"]


def test_a_relative_local_pattern_selects_files(tmp_path, monkeypatch):
    for name in ("train-000.tar", "train-001.tar", "val-000.tar"):
        (tmp_path / name).write_bytes(b"t")
    monkeypatch.chdir(tmp_path.parent)
    found = storage.list_files(f"{tmp_path.name}/train-*.tar", StorageOptions())
    assert [f.uri for f in found] == [str(tmp_path / "train-000.tar"), str(tmp_path / "train-001.tar")]
