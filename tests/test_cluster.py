"""Submitting to a cluster: the submit helpers, the cluster configs in cluster/, and a real
multi-node Ray on this machine (head + a worker node, token auth on) that runs a job through the Jobs API."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from jobs import infer
from recog import cluster, storage
from recog.cluster import ClusterError
from tests.conftest import REPO
from tests.imagedata import jpeg, tar_shard

CLUSTER = REPO / "cluster"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
RAY_VERSION = re.search(r"^ray==(\S+)", (REPO / "constraints.txt").read_text(), re.M).group(1)
IMAGE = f"ghcr.io/YOUR-ORG/recog:{VERSION}"


# ---- submit helpers, no cluster ------------------------------------------------------------------

def test_a_job_becomes_its_module_with_arguments_checked_before_sending():
    assert cluster.entrypoint(["infer", "--input", "s3://a/x y/", "--output", "s3://b/"]) == \
        "python -m jobs.infer --input 's3://a/x y/' --output s3://b/"
    assert cluster.entrypoint(["footage", "--input", "i", "--output", "o", "--fps", "2"]).startswith("python -m jobs.footage ")
    with pytest.raises(ClusterError, match="one of infer, footage, train, eval"):
        cluster.entrypoint(["demo"])
    with pytest.raises(SystemExit):  # argparse has said what is wrong
        cluster.entrypoint(["infer", "--input", "s3://a/"])  # no --output


def test_the_job_gets_store_settings_and_never_secrets():
    environ = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1",
               "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "CAMERA_SET": "north"}
    env = cluster.job_env(["CAMERA_SET", "RECOG_NOTE=hello"], environ)
    assert env == {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1",
                   "CAMERA_SET": "north", "RECOG_NOTE": "hello"}
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_PASSWORD=x", "AWS_ACCESS_KEY_ID"):
        with pytest.raises(ClusterError, match="looks like a secret"):
            cluster.job_env([name], environ)
    with pytest.raises(ClusterError, match="not set in this environment"):
        cluster.job_env(["MISSING_THING"], environ)


def test_this_checkout_ships_as_working_dir_without_its_environment():
    root = cluster.source_checkout()
    assert root == REPO
    renv = cluster.runtime_env(root, {"AWS_REGION": "x"})
    assert renv["working_dir"] == str(REPO) and {".venv", ".git", "recog-data"} <= set(renv["excludes"])
    assert cluster.runtime_env(None, {})  == {"env_vars": {}}


def test_no_cluster_address_says_what_to_set(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterError, match="export RAY_ADDRESS"):
        cluster.connect(None)


# ---- the configs in cluster/ ---------------------------------------------------------------------

def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def cluster_specs() -> dict[str, dict]:
    """Every RayCluster spec in cluster/k8s: the RayCluster's own, and the one inside the RayJob."""
    specs = {}
    for path in sorted((CLUSTER / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "RayCluster":
                specs[path.name] = doc["spec"]
            elif doc["kind"] == "RayJob":
                specs[path.name] = doc["spec"]["rayClusterSpec"]
    return specs


def test_kuberay_manifests_are_consistent_with_the_package():
    specs = cluster_specs()
    assert set(specs) == {"raycluster.yaml", "rayjob-infer.yaml"}
    for name, spec in specs.items():
        assert spec["rayVersion"] == RAY_VERSION, name
        assert spec["authOptions"]["mode"] == "token", name
        assert spec["enableInTreeAutoscaling"] is True, name
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", name  # the driver's node
        pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
        for c in (c for pod in pods for c in containers(pod)):
            assert c["image"] == IMAGE, name
            assert c["resources"]["requests"] == c["resources"]["limits"], name  # sized, and guaranteed
            env = {e["name"]: e for e in c["env"]}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "value" not in env[key] and env[key]["valueFrom"]["secretKeyRef"]["name"] == "recog-s3", name
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert set(groups) == {"cpu-preprocess", "gpu-predict"}, name
        for g in groups.values():
            assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], name
        gpu = groups["gpu-predict"]
        gpus = containers(gpu["template"])[0]["resources"]["limits"]["nvidia.com/gpu"]
        assert gpu["rayStartParams"]["num-gpus"] == gpus == "1", name
        assert groups["cpu-preprocess"]["rayStartParams"]["num-gpus"] == "0", name
    secret = yaml.safe_load((CLUSTER / "k8s" / "s3-secret.example.yaml").read_text())
    assert secret["metadata"]["name"] == "recog-s3"
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_the_rayjob_entrypoint_is_a_valid_recog_job():
    job = yaml.safe_load((CLUSTER / "k8s" / "rayjob-infer.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.infer"]
    args = infer.get_args_parser().parse_args(argv[3:])
    assert args.input.startswith("s3://") and args.output.startswith("s3://")


def test_the_launcher_config_is_complete():
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types and cfg["provider"]["type"] == "aws"
    assert any(t["resources"].get("GPU") for t in types.values())
    assert types[cfg["head_node_type"]]["resources"]["CPU"] == 0
    assert cfg["max_workers"] >= sum(t.get("max_workers", 0) for t in types.values())
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())  # no keys on machines
    assert cfg["docker"]["image"] == IMAGE
    assert cfg["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


def test_the_image_installs_this_package_on_the_pinned_ray():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:(\S+)-py311-gpu$", text, re.M).group(1) == RAY_VERSION
    assert "-c constraints.txt" in text
    assert all(f"COPY --chown=ray:users {d} ./{d}" in text for d in ("recog", "jobs"))


def test_local_cluster_script_parses_and_explains_itself():
    assert subprocess.run(["bash", "-n", str(CLUSTER / "local.sh")]).returncode == 0
    help_text = subprocess.run(["bash", str(CLUSTER / "local.sh"), "--help"], capture_output=True, text=True)
    assert "start" in help_text.stdout or "usage" in help_text.stderr


# ---- a real multi-node cluster on this machine -------------------------------------------------

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


@pytest.mark.integration
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


@pytest.mark.integration
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
