#!/usr/bin/env bash
# Sets up what is missing (apt packages, .venv) and runs the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k journal -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
# pytest exits 5 when no test ran: with set -e that fails the run too.
exec .venv/bin/python -m pytest "$@"
