#!/usr/bin/env bash
# Wasm tier, host shim part: lwhost's worker side compiled to wasm32 (the
# browser build, host/web) runs in several wasmtime threads over one shared
# memory, served by the native main side against the real lwproxy and
# loopback TCP/TLS servers (tests/wasm-test). One result per check.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"

lw_need_apt "${LW_APT_BASE[@]}"
lw_need_rust

if ! wasm_dir=$(bash "$LW_ROOT/host/web/build.sh" build); then
    lw_result fail wasm_host.build
    exit 1
fi
if ! cargo build --release -p lwproxy >&2 || ! cargo build -p lwhost-wasm-test >&2; then
    lw_result fail wasm_host.build
    exit 1
fi
lw_result pass wasm_host.build

log=$(mktemp)
rc=0
timeout 300 "$LW_ROOT/target/debug/lwhost-wasm-test" --shim "$wasm_dir/lwhost_web.wasm" \
    --proxy "$LW_ROOT/target/release/lwproxy" --threads 4 | tee "$log" || rc=$?
checks=0
while read -r status name rest; do
    case "$status" in
    ok) lw_result pass "$name"; checks=$((checks + 1)) ;;
    FAIL) lw_result fail "$name"; checks=$((checks + 1)); printf '  %s\n' "$rest" ;;
    esac
done <"$log"
rm -f "$log"
# A run that crashed before reporting anything still counts as a failure.
[ "$checks" -gt 0 ] || lw_result fail wasm_host.ran
exit "$rc"
