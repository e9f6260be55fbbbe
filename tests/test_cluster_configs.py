"""The cluster configs in cluster/ (KubeRay, the cluster launcher, the image, the local script) are
consistent with the package and with each other."""

from __future__ import annotations

import re
import shlex
import subprocess

import tomllib
import yaml

from recog.cli import command_parser
from tests.conftest import REPO

CLUSTER = REPO / "cluster"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
RAY_VERSION = re.search(r"^ray==(\S+)", (REPO / "constraints.txt").read_text(), re.M).group(1)
IMAGE = f"ghcr.io/YOUR-ORG/recog:{VERSION}"


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
    args = command_parser("infer").parse_args(argv[3:])
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
