"""Fine-tune a model on labeled shards with Ray Train (DDP); write a model package to --output.

    python -m jobs.train --train 's3://ds/train-{000..031}.tar' --val 's3://ds/val-*.tar' --output s3://models/gate-cams

The same job as `recog train` (its parser and code live in recog; `--help` lists every option).
"""

import sys

from recog.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("train", sys.argv[1:], prog="python -m jobs.train"))
