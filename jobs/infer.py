"""Label every image in tar shards and loose image files under --input; write Parquet to --output.

    python -m jobs.infer --input s3://archive/shards/ --output s3://archive/results/

The same job as `recog infer` (its parser and code live in recog; `--help` lists every option).
"""

import sys

from recog.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("infer", sys.argv[1:], prog="python -m jobs.infer"))
