#!/usr/bin/env bash
# The GPU measurement in one go: bench/gpu.sh [OUT_DIR] [options of bench/gpu.py]
# About 6 minutes on one H100 with 16 cores; writes OUT_DIR/gpu.json (each part as soon as it ends)
# and OUT_DIR/gpu.txt (the table).
# Installs recog from this checkout where it is not importable yet: `pip install -c constraints.txt -e .`
# with network; without (a locked-down GPU node), the wheels put in .whl/ beforehand
# (`pip download -d .whl ray==<version> ...`, for the node's Python).
# Photos: ../shared/data/photos/imagenet, or a copy in .gpu/photos (cp -r ../shared/data/photos/imagenet .gpu/photos);
# clips: ../shared/data/videos, or a copy in .gpu/videos (ahmetozlu_input_video.mp4, bgslibrary_video02.avi).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results}"
shift || true
mkdir -p "$out"
if ! python3 -c "import ray, recog" 2>/dev/null; then
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/recog-site .whl/*.whl
    export PYTHONPATH="/tmp/recog-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    python3 -m pip install -q -c constraints.txt -e .
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
PYTHONUNBUFFERED=1 python3 bench/gpu.py --json "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu.txt"
