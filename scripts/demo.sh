#!/usr/bin/env bash
# The s3seg demo on an embedded local S3, from a clean clone:
#   creates its own virtualenv, installs s3seg, starts a moto S3 server on 127.0.0.1, seeds a few hundred
#   CDR-like files (several days and hours, some that do not match), then plan -> apply -> status ->
#   rollback, showing the bucket before and after each step. It stops the server it started.
# Environment: S3SEG_VENV (default .venv-demo), PYTHON (default python3), DEMO_OBJECTS (default 300),
# DEMO_KEEP=1 (keep the work folder with the manifest, journal and log; removed by default).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${S3SEG_VENV:-.venv-demo}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install --quiet -e '.[demo]'
exec "$VENV/bin/python" scripts/demo.py "$@"
