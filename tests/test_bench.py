"""The benchmark scripts run (on tiny inputs, so they cannot rot); no speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_query_benchmark_runs_and_both_sides_agree(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "bench/query.py", "--rows", "1200", "--repeat", "1", "--data", str(tmp_path),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["rows"] == 1200 and figures["files"] == 600
    assert all(q["same_answer"] for q in figures["queries"].values())
