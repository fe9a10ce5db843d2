#!/usr/bin/env bash
# Run the lessons (quick profile, embedded ads), installing first if needed.
# Extra arguments go to `adgen run`, e.g. ./run.sh --profile ci --only 01, or ./run.sh --save-executed
# to refresh the executed copies in notebooks/executed/ from this run.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/adgen run --profile quick "$@"
