#!/usr/bin/env bash
# Tier 1: formatting, lints and unit tests of every crate, host and guest.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"

lw_need_apt "${LW_APT_BASE[@]}" "${LW_APT_PROXY[@]}"
lw_need_rust
cd "$LW_ROOT"

rc=0
lw_check "shellcheck" shellcheck -x linux-wasm.sh tools/*.sh tools/*/*.sh .ci/run || rc=1
lw_check "cargo fmt (host)" cargo fmt --all --check || rc=1
lw_check "cargo clippy (host)" cargo clippy --workspace --all-targets -q -- -D warnings || rc=1
lw_cargo_test "cargo test (host)" --workspace || rc=1
if [ -f guest/Cargo.toml ]; then
    lw_check "cargo fmt (guest)" cargo fmt --manifest-path guest/Cargo.toml --all --check || rc=1
    lw_check "cargo clippy (guest)" cargo clippy --manifest-path guest/Cargo.toml --workspace --all-targets -q -- -D warnings || rc=1
    lw_cargo_test "cargo test (guest)" --manifest-path guest/Cargo.toml --workspace || rc=1
fi
exit $rc
