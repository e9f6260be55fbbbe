"""Find, track, classify and count every vehicle in the videos under --input; write the vehicles and
crossings tables to --output.

    python -m jobs.vehicles --input s3://archive/cam-07/ --output s3://archive/traffic/ --line gate=0,0.75,1,0.75

The same job as `recog vehicles` (its parser and code live in recog; `--help` lists every option).
"""

import sys

from recog.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("vehicles", sys.argv[1:], prog="python -m jobs.vehicles"))
