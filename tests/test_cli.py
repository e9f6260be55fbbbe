"""The `recog` command without a cluster or a store: every command has --help, parsers come from
the configs, values are checked before any I/O, errors are one line, and the cluster commands
start without importing torch, Ray or PyAV."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from recog import cli
from recog.config import InferConfig, from_args
from recog.errors import ConfigError, JobFailed, StorageError, run_job
from tests.conftest import REPO


def run(*args: str, module: str = "recog.cli") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_has_help_that_states_defaults(name):
    text = cli.command_parser(name).format_help()
    assert text.startswith(f"usage: recog {name}")
    for action in cli.command_parser(name)._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) and action.help:
            assert "(default: " in action.help, (name, action.option_strings)


def test_the_entry_points_in_jobs_run_the_same_parsers():
    for module, name in (("jobs.infer", "infer"), ("jobs.footage", "footage"), ("jobs.train", "train"), ("jobs.evaluate", "eval")):
        done = run("--help", module=module)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: python -m {module}")
        flags = {o for a in cli.command_parser(name)._actions for o in a.option_strings}
        assert all(f in done.stdout for f in flags), module


def test_help_and_cluster_commands_import_no_torch_ray_or_av():
    for args in (["--help"], ["jobs", "--help"], ["infer", "--help"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "recog.cli", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0
        modules = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
        assert modules.isdisjoint({"torch", "ray", "av", "torchvision", "timm"}), (args, modules & {"torch", "ray", "av"})


def test_values_are_checked_by_the_parser_before_any_io():
    # nothing listens on port 9: a job that got as far as the store would fail differently
    base = ["footage", "--input", "s3://b/in/", "--output", "s3://b/out/", "--endpoint-url", "http://127.0.0.1:9"]
    for extra, message in ((["--fps", "0"], "--fps: must be greater than 0"), (["--every-n", "-1"], "must be at least 1"),
                           (["--fps", "1", "--every-n", "2"], "not allowed with argument"),
                           (["--min-vehicle-score", "2"], "must be between 0 and 1"),
                           (["--batch-size", "big"], "must be a number of inputs or auto, not big")):
        done = run(*base, *extra)
        assert done.returncode == 2 and message in done.stderr, (extra, done.stderr)
        assert "Traceback" not in done.stderr and "cannot reach" not in done.stderr


def test_eval_builds_its_config_from_its_own_flags():
    args = cli.command_parser("eval").parse_args(["--model", "s3://m/pkg", "--data", "s3://d/val-*.tar"])
    cfg = from_args(InferConfig, args, output="s3://m/pkg/eval")
    assert (cfg.input, cfg.output, cfg.model, cfg.force, cfg.input_list) == ("s3://d/val-*.tar", "s3://m/pkg/eval",
                                                                             "s3://m/pkg", False, None)


def test_configs_refuse_what_cannot_work_together():
    with pytest.raises(ConfigError, match="exactly one of --input or --input-list"):
        InferConfig(output="o")
    with pytest.raises(ConfigError, match="one way to sample"):
        InferConfig(input="i", output="o", fps=2.0, keyframes=True)
    assert InferConfig(input="i", output="o").sampling.fps == 1.0  # the default, decided in one place
    assert InferConfig(input="i", output="o", every_n=5).sampling.describe() == "every 5th frame"


def test_run_job_prints_one_line_and_the_exit_status(capsys):
    def fails(error):
        def main(args):
            raise error
        return main

    assert run_job(fails(StorageError("s3://b: the bucket does not exist")), argparse.Namespace()) == 2
    assert capsys.readouterr().err == "recog: error: s3://b: the bucket does not exist\n"
    assert run_job(fails(JobFailed("stopped after 2 of 5 units")), argparse.Namespace()) == 1
    assert run_job(lambda args: None, argparse.Namespace()) == 0
