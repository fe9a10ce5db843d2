#!/usr/bin/env bash
# install_into.sh VENV PIP_INSTALL_ARGUMENTS...: `VENV/bin/python -m pip install --quiet ARGUMENTS`,
# done by uv when it can be had (several times faster: parallel downloads, unpacking and byte-
# compiling), else by pip. uv is given pip's own configuration (`pip config list`: index-url,
# extra-index-url, find-links, constraint, cert, from the files and PIP_* variables) and pip's
# resolution (the best match over every index), and byte-compiles as pip does, so the two
# install the same packages. uv is found on PATH or installed once with pip into
# ~/.cache/adgen/uv (ADGEN_UV_DIR); ADGEN_NO_UV=1 always uses pip.
set -euo pipefail
venv=$1
shift
python=$venv/bin/python

with_pip() {
    "$python" -m pip install --quiet "$@"
}

find_uv() {
    if command -v uv >/dev/null 2>&1; then
        command -v uv
        return
    fi
    local home=${ADGEN_UV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/adgen/uv}
    if [[ ! -x $home/bin/uv ]]; then
        "$python" -m pip install --quiet --target "$home.partial" uv >&2 || return 1
        rm -rf "$home"
        mv "$home.partial" "$home"
    fi
    echo "$home/bin/uv"
}

with_uv() {
    local uv options=() key value item
    uv=$(find_uv) || return 1
    while IFS= read -r line; do
        key=${line%%=*}
        key=${key##*.}
        value=${line#*=}
        value=${value#\'}
        value=${value%\'}
        for item in $value; do
            case $key in
                index-url) options+=(--index-url "$item") ;;
                extra-index-url) options+=(--extra-index-url "$item") ;;
                find-links) options+=(--find-links "$item") ;;
                constraint) options+=(--constraint "$item") ;;
                cert) export SSL_CERT_FILE=${SSL_CERT_FILE:-$item} ;;
            esac
        done
    done < <("$python" -m pip config list 2>/dev/null)
    "$uv" pip install --quiet --python "$python" --index-strategy unsafe-best-match --compile-bytecode \
        "${options[@]}" "$@"
}

if [[ ${ADGEN_NO_UV:-} != 1 ]] && with_uv "$@"; then
    exit 0
fi
[[ ${ADGEN_NO_UV:-} == 1 ]] || echo "setup: uv could not install $*; installing with pip" >&2
with_pip "$@"
