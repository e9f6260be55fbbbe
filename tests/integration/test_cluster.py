"""A real multi-node Ray on this machine (head + a worker node, token auth on) that runs a job
through the Jobs API, with `recog submit` and `recog jobs`."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from recog import sink, storage, table
from tests.conftest import REPO
from tests.imagedata import jpeg, tar_shard

CLUSTER = REPO / "cluster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_cluster(store):
    """cluster/local.sh: a head and one worker node, 1 CPU each, token auth with a token of our own.
    The nodes get the store's credentials from the environment they start in (the cluster's
    "secret"); submitters get none of them through Ray."""
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    script = [str(CLUSTER / "local.sh")]
    opts = ["--workers", "1", "--cpus-per-node", "1", "--port", str(port), "--dashboard-port", str(dashboard)]
    started = subprocess.run(script + ["start", *opts], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}", "RAY_AUTH_MODE": "token"}
    finally:
        subprocess.run(script + ["stop", "--port", str(port)], env=env, timeout=60)


def recog(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recog.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_submit_runs_on_a_multi_node_cluster_with_token_auth(local_cluster, bucket, opts):
    env = local_cluster
    images = [(f"car{i}.jpg", jpeg(96, 64, (40 * i, 90, 200))) for i in range(6)] + [("bad.jpg", b"\xff\xd8 broken")]
    storage.write_bytes(f"{bucket}/in/shard-000.tar", tar_shard(images), opts)

    done = recog(env, "submit", "--", "infer", "--input", f"{bucket}/in/", "--output", f"{bucket}/out/")
    print(done.stdout[-3000:], done.stderr[-3000:])
    assert done.returncode == 0
    job_id = re.search(r"submitted (raysubmit_\w+)", done.stdout).group(1)
    assert "2 node(s)" in done.stdout  # the job saw the head and the worker node
    assert f"job {job_id} SUCCEEDED" in done.stdout
    runs = [f for f in storage.list_files(f"{bucket}/out/_runs/", opts)]
    manifest = json.loads(storage.read_bytes(runs[0].uri, opts))
    assert len(runs) == 1 and manifest["summary"]["rows"] == 7 and manifest["summary"]["errors"] == 1

    # A job that fails on the cluster fails here, with its exit status.
    failed = recog(env, "submit", "--", "infer", "--input", f"{bucket}/nothing/", "--output", f"{bucket}/out2/")
    assert failed.returncode == 2 and "nothing there to read" in failed.stdout
    listed = recog(env, "jobs", "list")
    assert listed.returncode == 0 and job_id in listed.stdout and "FAILED" in listed.stdout
    logs = recog(env, "jobs", "logs", job_id)
    assert "7 rows in 1 file(s), 1 error(s)" in logs.stdout
    assert "already ended" in recog(env, "jobs", "stop", job_id).stdout

    # The secret key is on the cluster (its environment), yet nowhere the submission left a trace:
    # not in the job table the dashboard serves, not in the logs, not in what the job wrote.
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    request = urllib.request.Request(f"{env['RAY_ADDRESS']}/api/jobs/",
                                     headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    job_table = urllib.request.urlopen(request, timeout=30).read().decode()
    assert job_id in job_table
    written = [storage.read_bytes(f.uri, opts).decode("latin-1") for f in storage.list_files(f"{bucket}/out/", opts)]
    for text in [job_table, done.stdout, done.stderr, logs.stdout, listed.stdout, *written]:
        assert secret not in text


def test_jobs_submitted_at_once_into_one_new_output_all_land(local_cluster, bucket, opts):
    """Three jobs over three cameras' loose images, submitted together into one new output: each
    makes its tables and records the output's unit size as the others do, and none may fail for it."""
    env, cameras = local_cluster, ("north", "south", "east")
    for n, camera in enumerate(cameras):
        for i in range(2):
            storage.write_bytes(f"{bucket}/{camera}/img{i}.jpg", jpeg(48 + 8 * n, 40 + i, (60 * n, 90, 200)), opts)
    submits = [subprocess.Popen([sys.executable, "-m", "recog.cli", "submit", "--", "infer", "--input", f"{bucket}/{camera}/",
                                 "--output", f"{bucket}/out/"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for camera in cameras]
    outputs = [p.communicate(timeout=600)[0] for p in submits]
    for p, out in zip(submits, outputs):
        assert p.returncode == 0, out[-3000:]
    dtable = table.load(table.uri(f"{bucket}/out", "results"), opts)
    rows = table.dataset(dtable, sink.OUTPUT_SCHEMA, opts).to_table(columns=["source_uri"]).column("source_uri").to_pylist()
    assert sorted(rows) == sorted(f"{bucket}/{camera}/img{i}.jpg" for camera in cameras for i in range(2))  # each once
    assert len(storage.list_files(f"{bucket}/out/_runs/", opts)) == len(cameras)


def test_a_wrong_token_is_refused_with_a_clear_message(local_cluster, bucket):
    env = {**local_cluster, "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # a well-formed token, not theirs
    before = recog(local_cluster, "jobs", "list").stdout
    refused = recog(env, "submit", "--", "infer", "--input", f"{bucket}/in/", "--output", f"{bucket}/out/")
    assert refused.returncode == 2
    assert "rejected the token" in refused.stderr and "RAY_AUTH_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert recog(local_cluster, "jobs", "list").stdout == before  # nothing was submitted
    missing = recog({k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"} | {"HOME": str(REPO / "no-home")}, "jobs", "list")
    assert missing.returncode == 2 and "wants a token and there is none here" in missing.stderr
