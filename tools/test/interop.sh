#!/usr/bin/env bash
# Tier interop: clients nobody here wrote, against the real lwproxy on loopback.
#   wisp-js: the Wisp client of @mercuryworkshop/wisp-js (version pinned, lockfile committed
#   in tests/interop/wisp-js) opens streams through lwproxy's /wisp/ endpoint: echo, policy
#   denial (0x48), bad token at the handshake, 64 parallel streams with one stalled target.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"

lw_need_apt "${LW_APT_BASE[@]}"
# The machine's Node.js (it brings npm); Debian's nodejs and npm where there is none.
command -v npm >/dev/null || lw_need_apt nodejs npm
lw_need_rust
cd "$LW_ROOT"

dir=tests/interop/wisp-js
if ! lw_check "interop: npm ci (wisp-js, pinned)" \
    npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error; then
    exit 1
fi
if ! lw_check "interop: lwproxy builds" cargo build -q -p lwproxy --bin lwproxy; then
    exit 1
fi

# One result per check the script reports ("ok NAME" / "fail NAME: why").
rc=0
out=$(timeout 120 node "$dir/interop.mjs" "$LW_ROOT/target/debug/lwproxy") || rc=$?
grep -v ' passed, [0-9]* failed$' <<<"$out" >&2 || true
while IFS= read -r line; do
    case $line in
    "ok "*) lw_result pass "interop.wisp-js: ${line#ok }" ;;
    "fail "*) lw_result fail "interop.wisp-js: ${line#fail }" ;;
    esac
done <<<"$out"
if [ "$rc" -ne 0 ] && ! grep -q '^fail ' <<<"$out"; then
    lw_result fail "interop.wisp-js: the script finished (exit $rc)"
fi
exit "$rc"
