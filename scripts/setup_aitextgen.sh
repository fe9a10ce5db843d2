#!/usr/bin/env bash
# Create .venv-aitextgen for the optional aitextgen path of notebook 06, once: later calls
# return at once unless requirements-aitextgen.txt changed. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=.venv-aitextgen
stamp=$venv/.adgen-installed
if [[ -f $stamp && $stamp -nt requirements-aitextgen.txt ]]; then
    exit 0
fi
echo "setup: installing aitextgen 0.6.0 into $venv (about 2 minutes the first time)" >&2
started=$SECONDS
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
# pip<24.1: newer pip refuses pytorch-lightning 1.7.7's metadata. torch pinned first (CPU wheel here).
# scripts/install_into.sh: pip install, done by uv where it can be had (the same packages, faster).
scripts/install_into.sh "$venv" "pip<24.1"
scripts/install_into.sh "$venv" torch==2.13.0
scripts/install_into.sh "$venv" -r requirements-aitextgen.txt
touch "$stamp"
echo "setup: aitextgen ready in $((SECONDS - started)) s" >&2
