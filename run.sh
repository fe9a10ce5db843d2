#!/usr/bin/env bash
# Run the notebook series (quick profile, embedded ads), installing first if needed.
# Extra arguments go to `adgen run`, e.g. ./run.sh --profile ci --only 01
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/adgen run --profile quick "$@"
