#!/usr/bin/env bash
# Run every notebook as a Colab user meets it: a fresh Colab-like machine per notebook, the
# notebook's real setup cell (git clone + pip install), Drive for the run folder.
#
#   scripts/colab_check.sh                 # all eight notebooks (ci profile), JSON summary on stdout
#   scripts/colab_check.sh --only 01       # one notebook (repeat --only, or --only 01,05)
#   scripts/colab_check.sh --keep          # keep /content, the overlays and fake Drives to inspect
#   scripts/colab_check.sh --build-only    # just build .venv-colab
#
# What is real and what is simulated:
# * Real: Python 3.13 (pyenv) and Colab's package versions (scripts/colab_sim/requirements-base.txt,
#   from the GUIDE; built once into .venv-colab, rebuilt when that file changes); the notebook
#   as committed (what an "Open in Colab" badge opens); its setup cell, which really runs
#   `git clone --depth 1 -b v<version>` and `python -m pip install /content/adgen[extras]` from PyPI; papermill
#   (from .venv) executing it with profile=ci and drive=True, in /content.
# * Simulated, only the Colab boundary: `google.colab` is a stand-in (scripts/colab_sim/fake,
#   imported at kernel start as on Colab): drive.mount puts a fresh temporary folder at
#   /content/drive (a bind mount as root, so paths resolve as on Colab; else a symbolic link);
#   userdata.get raises SecretNotFoundError (no secrets). The repository address in
#   pyproject.toml ([project.urls] Repository) is redirected by git's url.<base>.insteadOf, in a
#   temporary global git config, to a file:// bare clone of this checkout: only COMMITTED work
#   (HEAD, its tags) is tested. Each "fresh machine" is a throw-away venv layered over
#   .venv-colab (a .pth adds the base's site-packages after its own), so the setup cell's
#   installs land in the overlay and the diff against the base shows what they changed.
#   The overlay's pip reads no pip config files (like Colab: PyPI only, no local indexes).
# * Not simulated: a GPU (this runs on the CPU), Colab's RAM limit, Hub downloads (caches under
#   $HOME are shared with this machine), a 'v<version>' tag missing on GitHub (HEAD is tagged here).
# * torch: PyPI's torch 2.11.0 for cp313 is the CUDA 13.0 build (with nvidia-* wheels); Colab's
#   is 2.11.0+cu128 from download.pytorch.org, which this machine cannot reach. Same version; both
#   run on the CPU here. TensorFlow is the `tensorflow` 2.20.0 wheel, as on Colab.
#
# Output, under runs/colab-sim/: NN_name.ipynb (executed copies), NN_name.json (one result each),
# base-freeze.txt (pip freeze of .venv-colab), summary.json (also printed): per notebook ok/failed,
# the failing cell and error, seconds, and the packages the setup cell's pip install changed
# ("colab_stack_touched" lists torch/TensorFlow/kernel-stack packages replaced: a defect).
# Exit status: 0 when every notebook ran and no setup touched the Colab stack, 1 otherwise, 2 on a
# usage or harness error.
#
# Environment: PYTHON313 (default: pyenv's 3.13.0), COLAB_SIM_TIMEOUT (seconds per notebook,
# default 3600), COLAB_SIM_SOURCE (the git repository whose HEAD is "GitHub"; default: this
# checkout). Needs root or a writable /content. Runs one notebook at a time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIM=$ROOT/scripts/colab_sim
BASE=$ROOT/.venv-colab
OUT=$ROOT/runs/colab-sim
PAPERMILL=$ROOT/.venv/bin/papermill
HOST_PY=$ROOT/.venv/bin/python
CONTENT=/content
TIMEOUT=${COLAB_SIM_TIMEOUT:-3600}

die() { echo "colab_check: $*" >&2; exit 2; }
say() { echo "colab_check: $*" >&2; }

only=() keep=0 build_only=0
while (($#)); do
    case $1 in
        --only) [[ $# -ge 2 ]] || die "--only needs a notebook number, e.g. --only 01"
                IFS=, read -ra more <<<"$2"; only+=("${more[@]}"); shift 2 ;;
        --keep) keep=1; shift ;;
        --build-only) build_only=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

if [[ -z ${PYTHON313:-} ]]; then
    PYTHON313=$(pyenv prefix 3.13.0 2>/dev/null)/bin/python || PYTHON313=$HOME/.pyenv/versions/3.13.0/bin/python
fi
[[ -x $PYTHON313 ]] || die "no Python 3.13 at $PYTHON313 (pyenv install 3.13.0, or set PYTHON313)"
[[ -x $PAPERMILL ]] || die "no papermill in .venv (scripts/setup.sh builds .venv)"

# ---------------------------------------------------------------------------------------------
# The Colab-like base environment, built once
# ---------------------------------------------------------------------------------------------
build_base() {
    local want stamp=$BASE/.colab-sim-built
    want=$(sha256sum "$SIM/requirements-base.txt" | cut -c1-16)
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return
    fi
    say "building $BASE (Python 3.13, Colab's versions: ~7.5 GB, about 2 minutes on a fast connection)"
    local started=$SECONDS
    rm -rf "$BASE"
    "$PYTHON313" -m venv "$BASE"
    # PyPI only, as on Colab: no pip config files (local indexes, constraints), no find-links.
    export PIP_CONFIG_FILE=/dev/null
    unset PIP_FIND_LINKS PIP_CONSTRAINT PIP_EXTRA_INDEX_URL PIP_INDEX_URL
    "$BASE/bin/python" -m pip install --quiet --upgrade pip
    "$BASE/bin/python" -m pip install --quiet -r "$SIM/requirements-base.txt"
    local absent
    for absent in papermill sacrebleu gguf bitsandbytes; do
        if "$BASE/bin/python" -m pip show --quiet "$absent" >/dev/null 2>&1; then
            die "$absent got into $BASE, but Colab does not have it: find what pulls it in"
        fi
    done
    "$BASE/bin/python" -m pip check >&2 || say "warning: pip check is not clean in $BASE (see above)"
    echo "$want" >"$stamp"
    say "built $BASE in $((SECONDS - started)) s"
}

build_base
mkdir -p "$OUT"
"$BASE/bin/python" -m pip freeze --all >"$OUT/base-freeze.txt"
"$BASE/bin/python" -m pip list --format=json >"$OUT/.base-list.json" 2>/dev/null
if ((build_only)); then
    grep -iE '^(torch|tensorflow|keras|transformers|tokenizers|huggingface.hub|peft|accelerate|numpy|pandas|ipykernel|ipython|ipywidgets|jupyter.client)==' \
        "$OUT/base-freeze.txt" >&2
    exit 0
fi
BASE_SITE=$("$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# ---------------------------------------------------------------------------------------------
# The "GitHub" remote: a bare clone of this checkout's commits, reached through insteadOf
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/colab-sim.XXXXXX)
cleanup() {
    if ((keep)); then
        say "kept $WORK and $CONTENT"
    else
        if [[ -d $CONTENT ]]; then
            reset_content
            rmdir "$CONTENT" 2>/dev/null || true
        fi
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

SOURCE=${COLAB_SIM_SOURCE:-$ROOT}
git clone --quiet --bare "$SOURCE" "$WORK/adgen.git"
HEAD_SHA=$(git --git-dir="$WORK/adgen.git" rev-parse HEAD)
# The setup cell clones the tag of its version; a checkout between releases has none yet: tag HEAD.
VERSION=$(git --git-dir="$WORK/adgen.git" show HEAD:adgen_utils/__init__.py | sed -n 's/^__version__ = "\(.*\)"/\1/p')
if ! git --git-dir="$WORK/adgen.git" rev-parse --verify --quiet "v$VERSION" >/dev/null; then
    git --git-dir="$WORK/adgen.git" tag "v$VERSION" HEAD
    say "no tag v$VERSION in $SOURCE: the simulated GitHub tags HEAD (the real repository needs the release tag)"
fi
URL=$(git --git-dir="$WORK/adgen.git" show HEAD:pyproject.toml | "$BASE/bin/python" -c \
    'import sys, tomllib; print(tomllib.load(sys.stdin.buffer).get("project", {}).get("urls", {}).get("Repository", ""))')
[[ -n $URL ]] || die "the committed pyproject.toml has no [project.urls] Repository: the setup cell has nothing to clone"
GITCONFIG=$WORK/gitconfig
git config --file "$GITCONFIG" "url.file://$WORK/adgen.git.insteadOf" "$URL"
say "testing commit ${HEAD_SHA:0:10}; $URL -> file://$WORK/adgen.git"
if [[ -n $(git -C "$SOURCE" status --porcelain --untracked-files=no) ]]; then
    say "note: the working tree has uncommitted changes; they are NOT tested (Colab clones commits)"
fi

NOTEBOOKS=()
while IFS= read -r path; do
    name=$(basename "$path" .ipynb)
    if ((${#only[@]})); then
        for n in "${only[@]}"; do
            [[ $name == "$n"* ]] && NOTEBOOKS+=("$name")
        done
    else
        NOTEBOOKS+=("$name")
    fi
done < <(git --git-dir="$WORK/adgen.git" ls-tree --name-only HEAD notebooks/ | grep '\.ipynb$' | sort)
((${#NOTEBOOKS[@]})) || die "no committed notebook matches --only ${only[*]}"

# /content is the Colab machine's working folder: emptied before each notebook. Refuse to empty
# one that holds anything a previous simulation would not have left there.
reset_content() {
    if [[ -d $CONTENT ]]; then
        local entry
        for entry in "$CONTENT"/* "$CONTENT"/.[!.]*; do
            [[ -e $entry || -L $entry ]] || continue
            case $(basename "$entry") in
                adgen|drive|sample_data|.config) ;;
                *) die "$CONTENT holds $(basename "$entry"), which this script did not put there; move it away" ;;
            esac
        done
        # The fake Drive is a bind mount (or a link, where mount is not allowed): detach it
        # before anything is removed, so that only the machine's own files go.
        if mountpoint -q "$CONTENT/drive"; then
            umount "$CONTENT/drive" || die "could not unmount $CONTENT/drive"
        fi
        if [[ -L $CONTENT/drive ]]; then
            rm "$CONTENT/drive"
        elif [[ -d $CONTENT/drive ]]; then
            rmdir "$CONTENT/drive" || die "$CONTENT/drive is not empty and not a simulated Drive; move it away"
        fi
        rm -rf "${CONTENT:?}/adgen" "$CONTENT/sample_data" "$CONTENT/.config"
    fi
    mkdir -p "$CONTENT"
}

# ---------------------------------------------------------------------------------------------
# One notebook on one fresh simulated machine
# ---------------------------------------------------------------------------------------------
run_notebook() {
    local name=$1 machine=$WORK/$1
    mkdir -p "$machine"/{drive,ipython/profile_default/startup,kernels/colab-sim,source}
    reset_content

    # The overlay: its own site-packages first, then the base's (addsitedir also runs the base's .pth files).
    "$PYTHON313" -m venv --without-pip "$machine/venv"
    local site
    site=$("$machine/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "import site; site.addsitedir('$BASE_SITE')" >"$site/00-colab-base.pth"

    cp -r "$SIM/fake" "$machine/fake"
    cp "$SIM/ipython_startup.py" "$machine/ipython/profile_default/startup/00-google-colab.py"
    "$BASE/bin/python" - "$machine" "$GITCONFIG" <<'PY'
import json, os, sys
machine, gitconfig = sys.argv[1:]
env = {
    "PYTHONPATH": f"{machine}/fake",          # google.colab stand-in (namespace google/)
    "IPYTHONDIR": f"{machine}/ipython",       # startup file: import google.colab
    "COLAB_SIM_DRIVE": f"{machine}/drive",    # what drive.mount puts at /content/drive
    "COLAB_SIM_LOG": f"{machine}/colab-calls.log",  # the stand-in records its calls here
    "GIT_CONFIG_GLOBAL": gitconfig,           # insteadOf: the repository address -> the bare clone
    "GIT_CONFIG_NOSYSTEM": "1",
    "PIP_CONFIG_FILE": os.devnull,            # Colab's pip: PyPI only, no local indexes/constraints
    "PATH": f"{machine}/venv/bin:/usr/local/bin:/usr/bin:/bin",
}
spec = {"argv": [f"{machine}/venv/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (simulated Colab)", "language": "python", "env": env}
with open(f"{machine}/kernels/colab-sim/kernel.json", "w") as f:
    json.dump(spec, f, indent=1)
PY
    git --git-dir="$WORK/adgen.git" show "HEAD:notebooks/$name.ipynb" >"$machine/source/$name.ipynb"

    say "$name: running (fresh /content, overlay $machine/venv)"
    local started rc=0
    started=$(date +%s%N)
    (
        cd "$CONTENT"
        env -u PYTHONPATH -u VIRTUAL_ENV -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u HF_TOKEN -u HUGGING_FACE_HUB_TOKEN \
            JUPYTER_PATH="$machine" \
            timeout --kill-after=30 "$TIMEOUT" "$PAPERMILL" "$machine/source/$name.ipynb" "$OUT/$name.ipynb" \
            -k colab-sim --cwd "$CONTENT" -p profile ci -p drive True --log-output --no-progress-bar
    ) >"$OUT/$name.log" 2>&1 || rc=$?
    local ms=$((($(date +%s%N) - started) / 1000000))
    local seconds=$((ms / 1000)).$((ms % 1000 / 100))

    "$machine/venv/bin/python" -m pip list --format=json --path "$site" >"$machine/overlay-list.json" 2>/dev/null \
        || echo "[]" >"$machine/overlay-list.json"
    "$machine/venv/bin/python" -m pip check >"$machine/pip-check.txt" 2>&1 || true
    "$HOST_PY" "$SIM/report.py" notebook "$OUT/$name.ipynb" --seconds "$seconds" --rc "$rc" \
        --base "$OUT/.base-list.json" --overlay "$machine/overlay-list.json" --log "$OUT/$name.log" \
        --drive "$machine/drive" --pip-check "$machine/pip-check.txt" \
        --colab-log "$machine/colab-calls.log" >"$OUT/$name.json"
    say "$name: $("$HOST_PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["status"], r["seconds"], "s", (r.get("error") or {}).get("name") or "")' "$OUT/$name.json")"
    if ((!keep)); then
        reset_content
        rm -rf "$machine"
    fi
}

results=()
for name in "${NOTEBOOKS[@]}"; do
    rm -f "$OUT/$name.json" "$OUT/$name.ipynb"
    run_notebook "$name"
    results+=("$OUT/$name.json")
done

"$HOST_PY" "$SIM/report.py" summary "${results[@]}" --base-freeze "$OUT/base-freeze.txt" --head "$HEAD_SHA" \
    | tee "$OUT/summary.json"
"$HOST_PY" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["all_ok"] else 1)' "$OUT/summary.json"
