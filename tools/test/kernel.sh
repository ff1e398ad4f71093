#!/usr/bin/env bash
# Kernel tier: the lwnet patch series on Debian's linux-source 6.12 and 6.1.
# The committed series is the export of kernel/ (checked on 6.12, the pinned
# base). For each version: the series applies with `git am`, every patch is
# `checkpatch.pl --strict` clean, and the KUnit suite passes under user-mode
# Linux (one result per case). On 6.12 the driver (with the wasm backend,
# through COMPILE_TEST) also compiles warning-free with clang, W=1.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"
# shellcheck source=tools/kernel.sh
source "$LW_ROOT/tools/kernel.sh"

# python3-ply and python3-git let checkpatch run its SPDX check (spdxcheck.py).
lw_need_apt "${LW_APT_KERNEL[@]}" build-essential clang-19 lld-19 llvm-19 python3 python3-ply python3-git git

KDIR=$LW_BUILD/kernel-test
LOGS=$KDIR/logs
JOBS=${LW_KERNEL_JOBS:-2}
MIN_KUNIT_CASES=30
mkdir -p "$LOGS"

# lw_kernel_tree exits the shell on failure; keep the tier alive.
apply_series() { (lw_kernel_tree "$1" "$2"); }

# checkpatch_clean TREE PATCH: 0 errors, 0 warnings, 0 checks. Run inside
# the patched tree so identifiers the uapi headers define are known.
checkpatch_clean() {
    local tree=$1 patch=$2 log
    log=$LOGS/checkpatch-$(basename "$tree")-$(basename "$patch" .patch).log
    # Debian's python3 first: the one with ply, for the SPDX check.
    (cd "$tree" && PATH=/usr/bin:$PATH perl scripts/checkpatch.pl --strict --no-color "$patch") >"$log" 2>&1 || true
    if grep -q '^total: 0 errors, 0 warnings, 0 checks' "$log" && ! grep -q '^Traceback' "$log"; then
        return 0
    fi
    grep -E '^(ERROR|WARNING|CHECK)|^total:|Error' "$log" | sed 's/^/    /' || true
    return 1
}

# run_kunit VERSION TREE: records one result per KUnit case.
run_kunit() {
    local version=$1 tree=$2 build=$KDIR/kunit-$1 log=$LOGS/kunit-$1.log rc=0
    lw_info "kernel $version: KUnit under user-mode Linux (build dir $build)"
    (cd "$tree" && nice python3 tools/testing/kunit/kunit.py run --kunitconfig=drivers/misc/lwnet \
        --build_dir="$build" --jobs "$JOBS" --timeout 300) >"$log" 2>&1 || rc=$?
    local cases=0 status name
    # Case lines look like "[12:00:00] [PASSED] read_blocks_until_data";
    # the suite's own line is framed by "=" and is not a case.
    while read -r status name; do
        cases=$((cases + 1))
        if [ "$status" = PASSED ]; then
            lw_result pass "kernel $version kunit: $name"
        else
            lw_result fail "kernel $version kunit: $name ($status)"
        fi
    done < <(sed -nE 's/^\[[0-9:]+\] \[(PASSED|FAILED|SKIPPED|CRASHED)\] ([A-Za-z0-9_]+)$/\1 \2/p' "$log")
    if [ "$rc" -ne 0 ] || [ "$cases" -lt "$MIN_KUNIT_CASES" ]; then
        tail -n 40 "$log" | sed 's/^/    /'
        lw_result fail "kernel $version kunit: run (exit $rc, $cases cases, want >= $MIN_KUNIT_CASES; log $log)"
    fi
}

# The driver, the KUnit suite and the wasm backend (through COMPILE_TEST),
# built by clang with W=1 on x86_64: no warning at all.
clang_w1() {
    local tree=$1 build=$KDIR/clang-6.12 log=$LOGS/clang-w1.log
    local make_args=(-C "$tree" O="$build" LLVM=-19 ARCH=x86_64 -j"$JOBS")
    mkdir -p "$build"
    if [ ! -f "$build/.config" ] || [ "$tree/drivers/misc/lwnet/Kconfig" -nt "$build/.config" ]; then
        nice make "${make_args[@]}" allnoconfig >"$log" 2>&1 || { tail -n 20 "$log"; return 1; }
        cat >"$build/lwnet-clang.config" <<'EOF'
CONFIG_64BIT=y
CONFIG_COMPILE_TEST=y
CONFIG_KUNIT=y
CONFIG_LWNET=y
CONFIG_LWNET_KUNIT_TEST=y
CONFIG_LWNET_WASM=y
EOF
        (cd "$build" && "$tree/scripts/kconfig/merge_config.sh" -m .config lwnet-clang.config) >>"$log" 2>&1
        nice make "${make_args[@]}" olddefconfig >>"$log" 2>&1 || { tail -n 20 "$log"; return 1; }
    fi
    local sym
    for sym in CONFIG_LWNET CONFIG_LWNET_KUNIT_TEST CONFIG_LWNET_WASM; do
        grep -q "^$sym=y" "$build/.config" || { echo "    $sym is not set in the clang config"; return 1; }
    done
    nice make "${make_args[@]}" prepare >>"$log" 2>&1 || { tail -n 20 "$log"; return 1; }
    # Force a compile, so an up-to-date object cannot hide a warning.
    rm -rf "$build/drivers/misc/lwnet"
    nice make "${make_args[@]}" W=1 drivers/misc/lwnet/ >"$log.w1" 2>&1 || { tail -n 30 "$log.w1"; return 1; }
    ls "$build"/drivers/misc/lwnet/lwnet_{core,net,store,test_fake,test_net,test_store,wasm}.o >/dev/null || return 1
    if grep -E 'warning:|error:' "$log.w1"; then
        return 1
    fi
}

for version in 6.12 6.1; do
    tree=$KDIR/linux-$version
    if ! lw_check "kernel $version: patch series applies with git am" apply_series "$version" "$tree"; then
        continue
    fi
    if [ "$version" = 6.12 ]; then
        # The series is generated from kernel/: the committed export must be current.
        lw_check "kernel: patches/kernel/ equals a fresh export of kernel/ (tools/kernel-series.sh check)" \
            bash "$LW_ROOT/tools/kernel-series.sh" --tree "$tree" check || true
    fi
    for patch in "$LW_KERNEL_PATCHES"/*.patch; do
        lw_check "kernel $version: checkpatch --strict $(basename "$patch")" checkpatch_clean "$tree" "$patch" || true
    done
    run_kunit "$version" "$tree"
    if [ "$version" = 6.12 ]; then
        lw_check "kernel 6.12: clang LLVM=-19 W=1 build of drivers/misc/lwnet, warning-free" clang_w1 "$tree" || true
    fi
done
