#!/usr/bin/env bash
# Sets up what is missing (apt packages, .venv) and runs the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/bento demo "$@"
