"""What a failed job says stopped it (`recog.pipeline._cause`), on the exceptions Ray hands a driver."""

from __future__ import annotations

from ray.data.exceptions import UserCodeException
from ray.exceptions import RayTaskError

from recog.pipeline import _cause

RETRY_ADVICE = ("UDF failed to process a data block.\nTo change retry attempts, backoff, or which errors are retried, "
                "configure `ray.data.DataContext.get_current()`")


def task_error(traceback: str) -> BaseException:
    """What the driver gets when a Ray Data task raised: a RayTaskError(UserCodeException) whose text
    is the task's traceback, its cause Ray Data's retry advice."""
    return RayTaskError("write_units", traceback, UserCodeException(RETRY_ADVICE)).as_instanceof_cause()


def traceback_of(line: str) -> str:
    return (f'Traceback (most recent call last):\n  File "recog/table.py", line 285, in write_unit\n{line}\n\n'
            f"The above exception was the direct cause of the following exception:\n\n"
            f"ray.exceptions.UserCodeException: {RETRY_ADVICE}")


def test_a_task_that_lost_the_store_says_what_to_fix_not_rays_retry_advice():
    e = task_error(traceback_of("OSError: When initiating multiple part upload for key 'out/x.parquet' in bucket 'b': "
                                "AWS Error NETWORK_CONNECTION during CreateMultipartUpload operation: curlCode: 7"))
    said = _cause(e)
    assert said.startswith("the object store failed: cannot reach the store") and "[NETWORK_CONNECTION]" in said
    assert "retry attempts" not in said


def test_a_task_error_says_what_the_task_raised_first():
    said = _cause(task_error(traceback_of("ValueError: Parquet magic bytes not found in footer")))
    assert said == "ValueError: Parquet magic bytes not found in footer"


def test_a_driver_error_says_its_innermost_cause():
    try:
        try:
            raise KeyError("label")
        except KeyError as inner:
            raise RuntimeError("committing failed") from inner
    except RuntimeError as e:
        assert _cause(e) == "KeyError: 'label'"
    assert _cause(ValueError("first line\nlast line")) == "ValueError: last line"
