"""The errors recog raises for people, and how a command turns them into one line and an exit status.

Every mistake a user can make (a wrong key, a missing bucket, an unknown model, bad SQL, an
argument out of range) raises a `RecogError` whose message says what to fix; `run_job` prints it
as `recog: error: ...` without a traceback and exits with status 2. A job that started and could
not finish (`JobFailed`) exits with status 1. Bad *records* (a corrupt image) are not errors at
this level: they become rows with `error` set.

This module imports nothing of recog, so that every other module, the `recog` command and the
entry points in jobs/ can share it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

__all__ = ["RecogError", "ConfigError", "StorageError", "StoreError", "ModelError", "ClusterError",
           "SubmitError", "QueryError", "DecodeError", "JobFailed", "JobInterrupted", "run_job"]


class RecogError(Exception):
    """A problem the user can fix; the message says how."""

    exit_status = 2


class ConfigError(RecogError):
    """Arguments that cannot work together or are out of range."""


class StorageError(RecogError):
    """A store refused or could not serve a request (credentials, bucket, endpoint, missing input)."""


class StoreError(RecogError):
    """The embedded object store could not be started."""


class ModelError(RecogError):
    """The model asked for cannot be built or loaded."""


class ClusterError(RecogError):
    """The Ray cluster cannot run the job as asked (resources, address)."""


class SubmitError(RecogError):
    """The Jobs API of a Ray cluster cannot be reached, refused us, or does not know the job."""


class QueryError(RecogError):
    """The SQL is wrong: DuckDB's message says where."""


class DecodeError(RecogError):
    """A file is not an image or video we can use. Raised per record and turned into its `error`."""


class JobFailed(RecogError):
    """The job could not finish (e.g. the object store went away); what it committed is kept."""

    exit_status = 1


class JobInterrupted(RecogError):
    """Ctrl-C during a job: the message says what was committed and how to go on."""

    exit_status = 130


def run_job(main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; a RecogError becomes one line on stderr and its exit status. Output piped into
    a reader that stops early (`recog query ... | head -1`) ends the command quietly."""
    try:
        return main(args) or 0
    except JobInterrupted as e:
        print(f"recog: interrupted: {e}", file=sys.stderr)
        return e.exit_status
    except RecogError as e:
        print(f"recog: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("recog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader is gone: point stdout at /dev/null, so that Python's flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
