"""Submitting to a cluster without one: the entrypoint, what the job is sent (and never sent),
the token, and errors that say what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recog import submit
from recog.errors import SubmitError
from tests.conftest import REPO

# ---- submit helpers, no cluster ------------------------------------------------------------------

def test_a_job_becomes_its_module_in_jobs():
    assert submit.entrypoint(["infer", "--input", "s3://a/x y/", "--output", "s3://b/"]) == \
        "python -m jobs.infer --input 's3://a/x y/' --output s3://b/"
    assert submit.entrypoint(["footage", "--input", "i", "--output", "o", "--fps", "2"]).startswith("python -m jobs.footage ")
    assert submit.entrypoint(["eval", "--data", "d"]).startswith("python -m jobs.evaluate ")
    with pytest.raises(SubmitError, match="one of infer, footage, vehicles, train, eval"):
        submit.entrypoint(["demo"])
    for module in submit.JOB_MODULES.values():
        assert (REPO / (module.replace(".", "/") + ".py")).exists()


def test_arguments_are_checked_before_anything_is_sent(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")  # nothing listens: reaching it would fail differently
    done = subprocess.run([sys.executable, "-m", "recog.cli", "submit", "--", "infer", "--input", "s3://a/"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "the following arguments are required: --output" in done.stderr
    assert "cannot reach" not in done.stderr


def test_the_job_gets_store_settings_and_never_secrets():
    environ = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1",
               "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "CAMERA_SET": "north"}
    env = submit.job_env(["CAMERA_SET", "RECOG_NOTE=hello"], environ)
    assert env == {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1",
                   "CAMERA_SET": "north", "RECOG_NOTE": "hello"}
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_PASSWORD=x", "AWS_ACCESS_KEY_ID"):
        with pytest.raises(SubmitError, match="looks like a secret"):
            submit.job_env([name], environ)
    with pytest.raises(SubmitError, match="not set in this environment"):
        submit.job_env(["MISSING_THING"], environ)


def test_this_checkout_ships_as_working_dir_without_its_environment():
    root = submit.source_checkout()
    assert root == REPO
    renv = submit.runtime_env(root, {"AWS_REGION": "x"})
    assert renv["working_dir"] == str(REPO) and {".venv", ".git", "recog-data"} <= set(renv["excludes"])
    assert submit.runtime_env(None, {})  == {"env_vars": {}}


def test_no_cluster_address_says_what_to_set(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(SubmitError, match="export RAY_ADDRESS"):
        submit.JobsAPI(None)


def test_a_dashboard_that_is_not_there_says_so(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    api = submit.JobsAPI("127.0.0.1:9")  # no scheme: http is assumed
    assert api.address == "http://127.0.0.1:9"
    with pytest.raises(SubmitError, match="cannot reach the Ray dashboard at http://127.0.0.1:9"):
        api.list()


def test_the_token_comes_from_the_environment_or_rays_file(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "auth_token"))
    assert submit.auth_token() is None
    (tmp_path / "auth_token").write_text("from-file\n")
    assert submit.auth_token() == "from-file"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert submit.auth_token() == "from-env"


def test_a_job_listing_line_says_id_status_start_duration_and_command():
    line = submit.describe({"submission_id": "raysubmit_1", "status": "SUCCEEDED", "start_time": 1_000,
                            "end_time": 43_000, "entrypoint": "python -m jobs.infer --input a"})
    assert line.split()[:2] == ["raysubmit_1", "SUCCEEDED"] and "42s" in line and line.endswith("--input a")
