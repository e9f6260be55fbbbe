"""Object storage: one way to name, list, read and write data on S3-compatible stores and local disk.

Every URI recog takes is either `s3://bucket/key...` or a local path (`file://` optional). S3 goes
through pyarrow's S3 filesystem, which takes credentials from the standard AWS chain of each
process (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, instance roles). Only
the endpoint and region travel in `StorageOptions`, so secrets never enter job arguments,
manifests or logs. Errors from the store are turned into `StorageError`s that say what to fix.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import tempfile
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

from recog.errors import StorageError

# Bounded retries: a transient S3 error is retried with backoff inside pyarrow; what still fails
# raises, and the Ray task that met it is retried in turn.
S3_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class StorageOptions:
    """Where S3 is and how to reach it; no secrets (each process reads those from its environment)."""

    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, endpoint_url: str | None = None, region: str | None = None) -> "StorageOptions":
        """Options from explicit values, falling back to AWS_ENDPOINT_URL(_S3) and AWS_REGION."""
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if endpoint and not region:
            region = "us-east-1"  # S3-compatible servers ignore it; the AWS SDK wants one
        return cls(endpoint_url=endpoint or None, region=region or None)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def canonical(uri: str) -> str:
    """One spelling per location, so that an input's identity (the ids of its units) never depends
    on how it was typed: `s3://bucket/key` without doubled or trailing slashes; a local path (with
    or without `file://`) absolute and normalised (`./a/../b/` -> `/cwd/b`). Patterns keep their
    wildcards and braces."""
    if is_s3(uri):
        return "s3://" + re.sub("/+", "/", uri[len("s3://"):]).strip("/")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return os.path.abspath(os.path.expanduser(path))


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', whatever the scheme."""
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


def relative(uri: str, root: str) -> str:
    """The part of `uri` below `root` (both as given by `list_files`)."""
    root = root.rstrip("/") + "/"
    return uri[len(root):] if uri.startswith(root) else uri.rsplit("/", 1)[-1]


_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@functools.lru_cache(maxsize=8)
def _s3(opts: StorageOptions, max_attempts: int, _credentials: tuple) -> pafs.S3FileSystem:
    # `_credentials` (the environment's) is only part of the cache key: a process whose
    # credentials change gets a new client. The AWS SDK reads them from the environment itself.
    kwargs = dict(
        region=opts.region,
        connect_timeout=5,
        request_timeout=30,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
        allow_bucket_creation=True,
    )
    if opts.endpoint_url:
        kwargs["endpoint_override"] = opts.endpoint_url
        kwargs["scheme"] = "http" if opts.endpoint_url.startswith("http://") else "https"
    return pafs.S3FileSystem(**kwargs)


def filesystem(uri: str, opts: StorageOptions, max_attempts: int = S3_MAX_ATTEMPTS) -> tuple[pafs.FileSystem, str]:
    """The filesystem that serves `uri`, and the path to hand it."""
    if is_s3(uri):
        return _s3(opts, max_attempts, tuple(os.environ.get(v) for v in _CREDENTIAL_VARS)), uri[len("s3://"):]
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(path)


def _uri(uri: str, path: str) -> str:
    return "s3://" + path if is_s3(uri) else path


_AWS_ERROR = re.compile(r"AWS Error ([A-Z_]+)")
_ADVICE = {
    "SIGNATURE_DOES_NOT_MATCH": "the secret key was rejected: check AWS_SECRET_ACCESS_KEY (or the profile in AWS_PROFILE)",
    "INVALID_ACCESS_KEY_ID": "the access key is unknown to this store: check AWS_ACCESS_KEY_ID (or the profile in AWS_PROFILE)",
    "ACCESS_DENIED": "access denied: the credentials lack permission here, or none were found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)",
    "NO_SUCH_BUCKET": "the bucket does not exist at this endpoint: check the URI, or --endpoint-url / AWS_ENDPOINT_URL",
    "NETWORK_CONNECTION": "cannot reach the store: check --endpoint-url / AWS_ENDPOINT_URL and that the server is running",
}


def store_advice(text: str) -> str | None:
    """What to fix, in words, when `text` (an error's message, or a Ray task's traceback) holds an
    S3 error we know (`AWS Error NETWORK_CONNECTION`, ...); else None."""
    m = _AWS_ERROR.search(text)
    return f"{_ADVICE[m.group(1)]} [{m.group(1)}]" if m and m.group(1) in _ADVICE else None


def explain(err: BaseException, uri: str, opts: StorageOptions) -> StorageError:
    """Turn a filesystem error into a StorageError that names the URI, the endpoint and the fix."""
    where = f"{uri} (endpoint {opts.endpoint_url or 'AWS default'})" if is_s3(uri) else uri
    if advice := store_advice(str(err)):
        return StorageError(f"{where}: {advice}")
    if isinstance(err, FileNotFoundError):
        return StorageError(f"{where}: not found")
    return StorageError(f"{where}: {err}")


@dataclass(frozen=True)
class FileEntry:
    uri: str
    size: int


_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """Shell-style braces: 'a-{000..002}.tar' -> a-000, a-001, a-002; 'x.{jpg,png}' -> both."""
    m = _BRACE.search(pattern)
    if not m:
        return [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.groups()
        width = len(lo) if lo.startswith("0") else 0
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    return [out for c in choices for out in expand_braces(pattern[:m.start()] + c + pattern[m.end():])]


def is_pattern(uri: str) -> bool:
    return any(ch in uri for ch in "*?[{")


def list_files(uri: str, opts: StorageOptions, max_attempts: int = S3_MAX_ATTEMPTS) -> list[FileEntry]:
    """All files at or below `uri`, sorted by URI. A URI naming one file lists that file; braces
    and wildcards (`train-{000..031}.tar`, `val-*.tar`) select files by name."""
    if is_pattern(uri):
        return _list_pattern(uri, opts, max_attempts)
    fs, path = filesystem(uri, opts, max_attempts)
    try:
        if not is_s3(uri) and os.path.isfile(path):
            return [FileEntry(uri, os.path.getsize(path))]
        # Listing first: its errors name the problem precisely (a HEAD request's 403 cannot).
        infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=True, allow_not_found=True))
        files = [FileEntry(_uri(uri, i.path), i.size) for i in infos if i.type == pafs.FileType.File]
        if not files and is_s3(uri):
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.File:
                return [FileEntry(uri, info.size)]
            bucket = path.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise StorageError(f"{uri} (endpoint {opts.endpoint_url or 'AWS default'}): "
                                   f"{_ADVICE['NO_SUCH_BUCKET']} [NO_SUCH_BUCKET]")
    except OSError as e:
        raise explain(e, uri, opts) from e
    return sorted(files, key=lambda f: f.uri)


def _list_pattern(pattern: str, opts: StorageOptions, max_attempts: int) -> list[FileEntry]:
    if not is_s3(pattern):  # local listings give absolute paths: match them against an absolute pattern
        pattern = os.path.abspath(pattern.removeprefix("file://"))
    found: dict[str, FileEntry] = {}
    for expanded in expand_braces(pattern):
        if not any(ch in expanded for ch in "*?["):
            found.update((f.uri, f) for f in list_files(expanded, opts, max_attempts) if f.uri == expanded)
            continue
        # List the folder above the first wildcard, keep what matches the whole pattern.
        fixed = re.split(r"[*?\[]", expanded, maxsplit=1)[0].rsplit("/", 1)[0]
        found.update((f.uri, f) for f in list_files(fixed, opts, max_attempts) if fnmatch.fnmatchcase(f.uri, expanded))
    return sorted(found.values(), key=lambda f: f.uri)


READ_BUFFER = 4 << 20  # bytes per request when streaming an object


def open_input(uri: str, opts: StorageOptions):
    """A sequential read stream for `uri` (use as a context manager). Buffered: tarfile reads 10 KB
    at a time, and unbuffered each read would be an HTTP request."""
    fs, path = filesystem(uri, opts)
    return fs.open_input_stream(path, buffer_size=READ_BUFFER)


def read_bytes(uri: str, opts: StorageOptions) -> bytes:
    with open_input(uri, opts) as f:
        return f.read()


def write_bytes(uri: str, data: bytes, opts: StorageOptions, max_attempts: int = S3_MAX_ATTEMPTS) -> None:
    """Write an object so that readers see either nothing or all of it.

    On S3 an object appears only when its upload completes; on local disk we write a temporary
    file beside the target and rename it into place.
    """
    fs, path = filesystem(uri, opts, max_attempts)
    if is_s3(uri):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_new(uri: str, data: bytes, opts: StorageOptions) -> bool:
    """Write an object only if there is none at `uri`, atomically: of writers racing for one URI,
    exactly one gets True. S3 through a conditional put (`If-None-Match: *`, which AWS S3, MinIO and
    SeaweedFS honour; pyarrow's filesystem cannot send it); local disk through a hard link, which
    never replaces a file."""
    if is_s3(uri):
        import boto3
        from botocore.exceptions import ClientError

        bucket, key = uri[len("s3://"):].split("/", 1)
        # a session of its own: boto3's default one is not safe to make clients from in several threads
        client = boto3.session.Session().client("s3", endpoint_url=opts.endpoint_url, region_name=opts.region)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):  # there is one (409: a racing put)
                return False
            raise StorageError(f"{uri} (endpoint {opts.endpoint_url or 'AWS default'}): {e}") from None
        return True
    path = os.path.abspath(uri.removeprefix("file://"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def exists(uri: str, opts: StorageOptions) -> bool:
    fs, path = filesystem(uri, opts)
    return fs.get_file_info(path).type == pafs.FileType.File


def delete(uri: str, opts: StorageOptions, max_attempts: int = S3_MAX_ATTEMPTS) -> None:
    fs, path = filesystem(uri, opts, max_attempts)
    fs.delete_file(path)


def read_list(list_uri: str, opts: StorageOptions, max_attempts: int = S3_MAX_ATTEMPTS) -> list[FileEntry]:
    """The files named in a list file (one URI or path per line; blank lines and # comments skipped)."""
    try:
        text = read_bytes(list_uri, opts).decode("utf-8")
    except FileNotFoundError:
        raise StorageError(f"{list_uri}: input list not found") from None
    except OSError as e:
        raise explain(e, list_uri, opts) from e
    uris = [canonical(line.strip()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    files, missing = [], []
    for uri in uris:
        fs, path = filesystem(uri, opts, max_attempts)
        try:
            info = fs.get_file_info(path)
        except OSError as e:
            raise explain(e, uri, opts) from e
        if info.type == pafs.FileType.File:
            files.append(FileEntry(uri, info.size))
        else:
            missing.append(uri)
    if missing:
        raise StorageError(f"{list_uri}: {len(missing)} listed file(s) do not exist, e.g. {', '.join(missing[:3])}")
    return files


def common_root(uris: list[str]) -> str:
    """The deepest folder that holds all `uris`."""
    parts = [u.split("/")[:-1] for u in uris]
    root = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        root.append(level[0])
    return "/".join(root)


def listing_root(source: str, files: list[FileEntry], is_list: bool = False) -> str:
    """What the keys of a listing are relative to: the prefix the user gave, or, for a list file or
    a pattern (which name files rather than a folder), the deepest folder holding them all."""
    return common_root([f.uri for f in files]) if is_list or is_pattern(source) else source


def check_local_output(output_uri: str) -> None:
    """A local --output must be a folder (or not exist yet) that we may create and write in. Nothing
    is created here: a job refused before any work leaves no folder behind."""
    path = filesystem(output_uri, StorageOptions())[1]
    if os.path.exists(path) and not os.path.isdir(path):
        raise StorageError(f"{output_uri}: is a file; the output is a folder (a new one, or one a recog job wrote)")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise StorageError(f"{output_uri}: cannot be made, {parent} is a file")
    try:  # a folder made and removed at once: permissions alone do not say (root may not write in /proc)
        os.rmdir(tempfile.mkdtemp(prefix=".recog-write-probe-", dir=parent))
    except OSError as e:
        raise StorageError(f"{output_uri}: no permission to write in {parent} ({e.strerror})") from None


def check_access(input_uri: str, output_uri: str, opts: StorageOptions, input_list: bool = False) -> list[FileEntry]:
    """Fail fast, before any cluster work: list the input and prove the output is writable.

    Returns the input listing: the files under `input_uri`, or those it names if `input_list`.
    One attempt per request, so a wrong key or a dead endpoint fails in seconds instead of
    after the retry budget meant for long jobs.
    """
    files = read_list(input_uri, opts, 1) if input_list else list_files(input_uri, opts, max_attempts=1)
    if not files and not is_s3(input_uri) and not is_pattern(input_uri) and not os.path.exists(filesystem(input_uri, opts)[1]):
        raise StorageError(f"{input_uri}: not found (no such file or folder)")
    if not files:
        raise StorageError(f"{input_uri}: nothing there to read")
    if not is_s3(output_uri):
        check_local_output(output_uri)
        return files
    probe = join(output_uri, f".recog-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        write_bytes(probe, b"", opts, max_attempts=1)
        delete(probe, opts, max_attempts=1)
    except OSError as e:
        raise explain(e, output_uri, opts) from e
    return files
