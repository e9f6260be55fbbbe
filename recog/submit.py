"""Running recog's jobs on a Ray cluster through Ray's Job Submission API.

`recog submit -- infer --input ... --output ...` becomes the entrypoint `python -m jobs.infer ...`
on the cluster, with this checkout as the job's working_dir (or, from an installed recog, the
package the cluster image has). The cluster's address comes from --address or RAY_ADDRESS (the
dashboard, e.g. http://head:8265); with token auth on, the token comes from RAY_AUTH_TOKEN or
~/.ray/auth_token and is sent as `Authorization: Bearer <token>`.

`JobsAPI` speaks the Jobs REST API with the standard library, so that listing, following and
stopping jobs start in a blink; only sending a job uses Ray's own client, which packs and uploads
the working_dir.

Credentials are never sent: a job's runtime_env and entrypoint are stored in the cluster's job
table for anyone with dashboard access to read, so the job uses the cluster's own credentials
(a Kubernetes Secret, an instance role, or the environment the nodes were started with). Only
settings that are not secret (the S3 endpoint, the region) go with the job.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from recog.errors import SubmitError

# recog commands that run as cluster jobs -> the module in jobs/ that is their entry point
JOB_MODULES = {"infer": "jobs.infer", "footage": "jobs.footage", "vehicles": "jobs.vehicles", "train": "jobs.train",
               "eval": "jobs.evaluate"}
# Settings passed to the job from the submitter's environment when set: where the store and the
# model registry are, not who you are.
PASSED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "MLFLOW_TRACKING_URI",
              "MLFLOW_REGISTRY_URI")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "ACCESS_KEY", "SESSION", "PRIVATE")
# What of a checkout stays home: environments, data, caches.
EXCLUDES = [".git", ".venv", "venv", "recog-data", "*.egg-info", "__pycache__", ".pytest_cache", "*.tar", "*.mp4"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def entrypoint(command: list[str]) -> str:
    """`["infer", "--input", "s3://a/"]` -> `python -m jobs.infer --input s3://a/`. (The caller checks
    the arguments with the job's parser first, so that a typo fails before anything is sent.)"""
    if not command or command[0] not in JOB_MODULES:
        raise SubmitError(f"what to run: one of {', '.join(JOB_MODULES)}, then its arguments "
                          f"(e.g. recog submit -- infer --input s3://... --output s3://...)")
    return shlex.join(["python", "-m", JOB_MODULES[command[0]], *command[1:]])


def is_secret(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS)


def job_env(extra: list[str], environ: dict[str, str] = os.environ) -> dict[str, str]:
    """Environment variables for the job: the store settings the submitter has, and `--env NAME[=VALUE]`.

    Names that look like secrets are refused: the job table would keep them in clear text.
    """
    env = {k: environ[k] for k in PASSED_ENV if environ.get(k)}
    for item in extra:
        name, eq, value = item.partition("=")
        if is_secret(name):
            raise SubmitError(f"--env {name}: not sent, it looks like a secret and Ray keeps a job's environment in "
                               f"its job table in clear text; give the cluster its credentials instead "
                               f"(a Kubernetes Secret, an instance role; see cluster/README.md)")
        if not eq and name not in environ:
            raise SubmitError(f"--env {name}: not set in this environment (use --env {name}=VALUE)")
        env[name] = value if eq else environ[name]
    return env


def source_checkout() -> Path | None:
    """The source tree this recog runs from (to ship as working_dir), or None for an installed package."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() and (root / "jobs").is_dir() else None


def runtime_env(working_dir: Path | None, env: dict[str, str]) -> dict:
    renv: dict = {"env_vars": env}
    if working_dir:
        renv |= {"working_dir": str(working_dir), "excludes": EXCLUDES}
    return renv


def auth_token() -> str | None:
    """The cluster token this client has: RAY_AUTH_TOKEN, else the file Ray keeps it in."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    token = os.environ.get("RAY_AUTH_TOKEN") or (path.read_text().strip() if path.is_file() else "")
    return token or None


def address_of(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise SubmitError("no cluster given: pass --address http://HEAD:8265 or export RAY_ADDRESS (the Ray dashboard)")
    return (address if address.startswith(("http://", "https://")) else "http://" + address).rstrip("/")


class JobsAPI:
    """The Jobs REST API of one cluster: list, inspect, read the logs of and stop jobs."""

    def __init__(self, address: str | None):
        self.address = address_of(address)
        self.token = auth_token()

    def request(self, method: str, path: str, body: dict | None = None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.address + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            if e.code in (401, 403):
                raise SubmitError(_refused(self.address, e.code, self.token is not None)) from None
            if e.code == 404 and path.startswith("/api/jobs/") and path != "/api/jobs/":
                raise SubmitError(f"no job {path.split('/')[3]} on the cluster at {self.address} "
                                  f"(recog jobs list shows them)") from None
            raise SubmitError(f"the Ray Jobs API at {self.address} answered {e.code}: {first_line(text)}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SubmitError(f"cannot reach the Ray dashboard at {self.address}: {reason} "
                              f"(is the cluster up, and is this its dashboard address and port, usually 8265?)") from None

    def list(self) -> list[dict]:
        return self.request("GET", "/api/jobs/")

    def info(self, job_id: str) -> dict:
        return self.request("GET", f"/api/jobs/{job_id}")

    def status(self, job_id: str) -> str:
        return self.info(job_id)["status"]

    def logs(self, job_id: str) -> str:
        return self.request("GET", f"/api/jobs/{job_id}/logs")["logs"]

    def stop(self, job_id: str) -> bool:
        return self.request("POST", f"/api/jobs/{job_id}/stop")["stopped"]


def _refused(address: str, code: int, had_token: bool) -> str:
    if not had_token:
        return (f"the cluster at {address} wants a token and there is none here: export "
                f"RAY_AUTH_TOKEN=<the cluster's token> (on the head: ray get-auth-token)")
    return (f"the cluster at {address} rejected the token ({code}): set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the "
            f"cluster's token (on the head: ray get-auth-token)")


def first_line(e: object) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def submit(api: JobsAPI, command: list[str], env: dict[str, str], working_dir: Path | None,
           num_cpus: float | None = None, wait_for_agent_s: float = 120) -> str:
    """Send the job with Ray's client (which packs and uploads the working_dir); return its
    submission id. A cluster that is still starting has no job agent yet and says "try again
    later": that is retried for up to `wait_for_agent_s`."""
    if api.token:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's client sends its token only in token mode
        os.environ.setdefault("RAY_AUTH_TOKEN", api.token)
    from ray.job_submission import JobSubmissionClient

    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.ERROR)  # packaging chatter; recog says what it sends
    kwargs = {"entrypoint_num_cpus": num_cpus} if num_cpus is not None else {}
    deadline = time.monotonic() + wait_for_agent_s
    while True:
        try:
            client = JobSubmissionClient(api.address)
            return client.submit_job(entrypoint=entrypoint(command), runtime_env=runtime_env(working_dir, env),
                                     metadata={"recog_command": command[0]}, **kwargs)
        except Exception as e:  # noqa: BLE001 - the SDK reports every refusal as some exception
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise SubmitError(f"the Ray Jobs API at {api.address} refused the job: {first_line(e)}") from None
            time.sleep(2)


def follow(api: JobsAPI, job_id: str, out: TextIO | None = None, poll_s: float = 1.0) -> str:
    """Print the job's logs as they come until it ends; return its final status."""
    out = out or sys.stdout
    shown = 0
    while True:
        status = api.status(job_id)  # before the logs: a job that ended has all its logs
        logs = api.logs(job_id)
        out.write(logs[shown:])
        out.flush()
        shown = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def exit_status(api: JobsAPI, job_id: str) -> int:
    """The job's result as a process exit status: the driver's own when known."""
    info = api.info(job_id)
    if info["status"] == "SUCCEEDED":
        return 0
    code = info.get("driver_exit_code")
    return code if code else (130 if info["status"] == "STOPPED" else 1)


def describe(info: dict) -> str:
    """One line for `recog jobs list`."""
    start, end = info.get("start_time"), info.get("end_time")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start / 1000)) if start else "-"
    took = f"{(end - start) / 1000:.0f}s" if end and start else "-"
    return f"{info.get('submission_id') or info.get('job_id'):<28} {info['status']:<10} {started}  {took:>6}  {info['entrypoint']}"
