"""Score a model on labeled shards: top-1 accuracy, per-class precision/recall, confusion matrix.

    python -m jobs.evaluate --model s3://models/gate-cams --data 's3://ds/test-*.tar'

The same job as `recog eval` (its parser and code live in recog; `--help` lists every option).
"""

import sys

from recog.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("eval", sys.argv[1:], prog="python -m jobs.evaluate"))
