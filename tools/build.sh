#!/usr/bin/env bash
# ./linux-wasm.sh build: builds LW_TARGET (wasm by default, or um).
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

target=${LW_TARGET:-wasm}
case "${1:-}" in -h | --help)
    cat <<'USAGE'
Usage: [LW_TARGET=wasm|um] ./linux-wasm.sh build [ARGS]

  LW_TARGET=wasm (default)  fetch upstream linux-wasm at a pinned commit, build it with our
                            kernel series, config, guest tools and runtime patch, and assemble
                            site/ (needs network access; hours, LLVM is built from source).
                            LW_UPSTREAM_REF=COMMIT pins another commit; LW_UPSTREAM=DIR uses a
                            local checkout. See: LW_TARGET=wasm ./linux-wasm.sh build --help
  LW_TARGET=um              the native user-mode Linux system used by run, test and bench
                            (minutes, offline). See: LW_TARGET=um ./linux-wasm.sh build --help
USAGE
    [ "${LW_TARGET:-}" = "" ] && exit 0 ;;
esac
case "$target" in
    um) exec bash "$LW_ROOT/tools/build-um.sh" "$@" ;;
    wasm) exec bash "$LW_ROOT/tools/build-wasm.sh" "$@" ;;
    *) echo "error: LW_TARGET must be 'wasm' or 'um', not '$target'" >&2; exit 2 ;;
esac
