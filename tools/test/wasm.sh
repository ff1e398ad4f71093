#!/usr/bin/env bash
# Tier 2: wasm32 builds exercised under wasmtime. Each part adds a
# tools/test/wasm-<part>.sh (host shim, guest tools); this runs them all.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"

rc=0 found=0
for part in "$LW_ROOT"/tools/test/wasm-*.sh; do
    [ -f "$part" ] || continue
    found=1
    lw_info "wasm tier: $(basename "$part" .sh)"
    bash "$part" || rc=1
done
[ "$found" -eq 1 ] || lw_warn "no wasm test parts present"
exit $rc
