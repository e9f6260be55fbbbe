"""Label sampled frames of every video under --input; write Parquet to --output.

    python -m jobs.footage --input s3://archive/cam-07/2026-11/ --output s3://archive/results/ --fps 1

The same job as `recog footage` (its parser and code live in recog; `--help` lists every option).
"""

import sys

from recog.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("footage", sys.argv[1:], prog="python -m jobs.footage"))
