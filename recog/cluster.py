"""Running recog's jobs on a Ray cluster through Ray's Job Submission API.

`recog submit -- infer --input ... --output ...` becomes the entrypoint `python -m jobs.infer ...`
on the cluster, with this checkout as the job's working_dir (or, from an installed recog, the
package the cluster image has). The cluster's address comes from --address or RAY_ADDRESS (the
dashboard, e.g. http://head:8265); with token auth on, Ray's client sends the token from
RAY_AUTH_TOKEN or ~/.ray/auth_token.

Credentials are never sent: a job's runtime_env and entrypoint are stored in the cluster's job
table for anyone with dashboard access to read, so the job uses the cluster's own credentials
(a Kubernetes Secret, an instance role, or the environment the nodes were started with). Only
settings that are not secret (the S3 endpoint, the region) go with the job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TextIO

# recog subcommands that run as cluster jobs -> the module that is their entry point
JOB_MODULES = {"infer": "jobs.infer", "footage": "jobs.footage", "train": "jobs.train", "eval": "jobs.eval"}
# Settings passed to the job from the submitter's environment when set: where the store is, not who you are.
PASSED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "ACCESS_KEY", "SESSION", "PRIVATE")
# What of a checkout stays home: environments, data, caches.
EXCLUDES = [".git", ".venv", "venv", "recog-data", "*.egg-info", "__pycache__", ".pytest_cache", "*.tar", "*.mp4"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class ClusterError(Exception):
    """The cluster cannot be reached, refused us, or does not know the job: the message says what to do."""


def entrypoint(command: list[str]) -> str:
    """`["infer", "--input", "s3://a/"]` -> `python -m jobs.infer --input s3://a/`, arguments checked here
    first by the job's own parser, so a typo fails before anything is sent."""
    if not command or command[0] not in JOB_MODULES:
        raise ClusterError(f"what to run: one of {', '.join(JOB_MODULES)}, then its arguments "
                           f"(e.g. recog submit -- infer --input s3://... --output s3://...)")
    import importlib

    module = importlib.import_module(JOB_MODULES[command[0]])
    module.get_args_parser().parse_args(command[1:])  # exits with argparse's message on a mistake
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
            raise ClusterError(f"--env {name}: not sent, it looks like a secret and Ray keeps a job's environment in "
                               f"its job table in clear text; give the cluster its credentials instead "
                               f"(a Kubernetes Secret, an instance role; see cluster/README.md)")
        if not eq and name not in environ:
            raise ClusterError(f"--env {name}: not set in this environment (use --env {name}=VALUE)")
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


def connect(address: str | None):
    """A Jobs API client for `address` (or RAY_ADDRESS); a clear error when there is none or it refuses us."""
    _send_token_if_any()  # before Ray reads its settings
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):  # packaging chatter; recog says what it sends
        logging.getLogger(name).setLevel(logging.ERROR)

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ClusterError("no cluster given: pass --address http://HEAD:8265 or export RAY_ADDRESS (the Ray dashboard)")
    if not address.startswith(("http://", "https://")):
        address = "http://" + address
    try:
        client = JobSubmissionClient(address)
        client.list_jobs()  # the first request that needs the token: fail here, not half-way
    except ConnectionError as e:
        raise ClusterError(f"cannot reach the Ray dashboard at {address}: {first_line(e)} "
                           f"(is the cluster up, and is this its dashboard address and port, usually 8265?)") from None
    except (AuthenticationError, RuntimeError) as e:  # how the SDK reports refusals
        raise ClusterError(_explain(address, e)) from None
    return client


def _send_token_if_any() -> None:
    """Ray's client sends its token only in token mode: turn that on when there is a token to send,
    as `ray` itself does for a cluster it starts; an explicit RAY_AUTH_MODE wins."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or path.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _explain(address: str, e: Exception) -> str:
    text = getattr(e, "message", None) or str(e)
    if "couldn't find an authentication token" in text:
        return (f"the cluster at {address} wants a token and there is none here: export "
                f"RAY_AUTH_TOKEN=<the cluster's token> (on the head: ray get-auth-token)")
    if "Authentication failed" in text or "403" in text:
        return (f"the cluster at {address} rejected the token: set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the "
                f"cluster's token (on the head: ray get-auth-token), and RAY_AUTH_MODE=token")
    if "Authentication required" in text or "401" in text:
        return (f"the cluster at {address} wants a token: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the cluster's "
                f"token> (on the head: ray get-auth-token)")
    return f"the Ray Jobs API at {address} failed: {first_line(e)}"


def first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def submit(client, command: list[str], env: dict[str, str], working_dir: Path | None,
           num_cpus: float | None = None, wait_for_agent_s: float = 120) -> str:
    """Send the job; return its submission id. A cluster that is still starting has no job agent
    yet and says "try again later": that is retried for up to `wait_for_agent_s`."""
    kwargs = {"entrypoint_num_cpus": num_cpus} if num_cpus is not None else {}
    deadline = time.monotonic() + wait_for_agent_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint(command), runtime_env=runtime_env(working_dir, env),
                                     metadata={"recog_command": command[0]}, **kwargs)
        except Exception as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise ClusterError(_explain(client.get_address(), e)) from None
            time.sleep(2)


def follow(client, job_id: str, out: TextIO = sys.stdout) -> str:
    """Print the job's logs as they come until it ends; return its final status."""
    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    try:
        asyncio.run(tail())
    except RuntimeError:
        pass  # the log stream can close before the status turns terminal; poll below
    return wait(client, job_id)


def wait(client, job_id: str, poll_s: float = 1.0) -> str:
    while (status := str(client.get_job_status(job_id).value)) not in TERMINAL:
        time.sleep(poll_s)
    return status


def exit_status(client, job_id: str) -> int:
    """The job's result as a process exit status: the driver's own when known."""
    info = client.get_job_info(job_id)
    if str(info.status.value) == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    return code if code else (130 if str(info.status.value) == "STOPPED" else 1)


def describe(info) -> str:
    """One line for `recog jobs list`."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start_time / 1000)) if info.start_time else "-"
    took = f"{(info.end_time - info.start_time) / 1000:.0f}s" if info.end_time and info.start_time else "-"
    return f"{info.submission_id or info.job_id:<28} {info.status.value:<10} {started}  {took:>6}  {info.entrypoint}"
