#!/usr/bin/env bash
# Create .venv with everything adgen needs, once: later calls return at once unless
# requirements.txt or pyproject.toml changed. PYTHON picks the interpreter (3.10+).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.adgen-installed
# adgen generate --engine spark and its tests need Java 17 or later: Debian's openjdk-17-jre-headless.
if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing Java 17 for Spark (openjdk-17-jre-headless)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    else
        echo "setup: Spark (adgen generate --engine spark) needs Java 17: sudo apt-get install openjdk-17-jre-headless" >&2
    fi
fi
if [[ -f $stamp && $stamp -nt requirements.txt && $stamp -nt pyproject.toml ]]; then
    exit 0
fi
echo "setup: installing adgen and its dependencies into .venv (a few minutes the first time)" >&2
started=$SECONDS
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
# torch first and pinned: anything that asks for an unpinned torch would pull a CUDA build.
# scripts/install_into.sh: pip install, done by uv where it can be had (the same packages, faster).
scripts/install_into.sh .venv torch==2.13.0
scripts/install_into.sh .venv -r requirements.txt
touch "$stamp"
echo "setup: done in $((SECONDS - started)) s" >&2
