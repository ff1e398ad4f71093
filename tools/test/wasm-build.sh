#!/usr/bin/env bash
# Part of tier 2 (wasm): `LW_UPSTREAM=DIR ./linux-wasm.sh build` against the
# fake upstream of tests/fake-upstream (our own stand-in for upstream's script,
# runtime and kernel tree; nothing of upstream is used), run twice: upstream's
# sources are fetched once and re-runs call build-os; the wasm series lands in
# the kernel's git log exactly once; the config fragment is in the defconfig
# and the .config; the initramfs segment holds the guest tools; site/ has the
# page, runtime, glue, kernel and initramfs under the names the page uses.
# Also: a vmlinux importing an unsupplied host function fails the build,
# LW_VARIANT=wasm64_nommu stops at once, and an unreachable upstream stops
# the build at once naming it.
# shellcheck disable=SC2317 # the checks below are called through lw_check
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"

lw_need_apt "${LW_APT_BASE[@]}"
mkdir -p "$LW_BUILD"
T=$(mktemp -d "$LW_BUILD/wasm-build-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
# shellcheck source=tests/fake-upstream/lib.sh
source "$LW_ROOT/tests/fake-upstream/lib.sh"
lw_fake_upstream "$T" || { lw_result fail wasm_build.setup; exit 1; }
ws=$T/ws
build() { lw_fake_build "$T" "$@"; } # build LOG [VAR=VALUE...]
verbs=$ws/upstream/fake-upstream.verbs
ktree=$ws/upstream/src/kernel

first_build() {
    build "$T/first.log" || { tail -n 30 "$T/first.log"; return 1; }
    [ "$(tr '\n' ' ' <"$verbs")" = "fetch-llvm fetch-kernel fetch-musl fetch-busybox build-tools build-os " ] ||
        { echo "verbs of the first build: $(tr '\n' ' ' <"$verbs")"; return 1; }
}
second_build() {
    : >"$verbs"
    build "$T/second.log" || { tail -n 30 "$T/second.log"; return 1; }
    [ "$(tr '\n' ' ' <"$verbs")" = "build-os " ] || { echo "verbs of the second build: $(tr '\n' ' ' <"$verbs")"; return 1; }
}
series_once() {
    local p subject n ok=0 wasm
    wasm=$(bash "$LW_ROOT/tools/kernel-series.sh" list wasm)
    for p in "$LW_ROOT"/patches/kernel/*.patch; do
        subject=$(sed -n 's/^Subject: \(\[PATCH[^]]*\] \)\{0,1\}//p' "$p" | head -n1)
        n=$(git -C "$ktree" log --format=%s | grep -cxF -- "$subject" || true)
        if ! grep -qxF -- "$p" <<<"$wasm"; then
            [ "$n" -eq 0 ] || { echo "'$subject' (not for wasm) is in the wasm kernel"; ok=1; }
        else
            [ "$n" -eq 1 ] || { echo "'$subject' is in the kernel's log $n times"; ok=1; }
        fi
    done
    return "$ok"
}
fragment_merged() {
    local opt
    while IFS= read -r opt; do
        [ "$(grep -cxF -- "$opt" "$ktree/arch/wasm/configs/wasm32_nommu_defconfig")" -eq 1 ] || { echo "$opt not once in the defconfig"; return 1; }
        grep -qxF -- "$opt" "$ws/upstream/build/kernel-wasm32_nommu/.config" || { echo "$opt not in .config"; return 1; }
    done < <(grep -E '^CONFIG_' "$LW_ROOT/patches/config/lwnet.config")
}
segment_has_tools() {
    local list
    list=$(zcat "$ws/build/wasm-wasm32_nommu-overlay.cpio.gz" | cpio -it --quiet)
    for t in lwtcp lwpkg lwsync; do grep -qx "usr/bin/$t" <<<"$list" || { echo "no usr/bin/$t in the segment"; return 1; }; done
    # The site's initramfs is upstream's followed by the segment.
    cmp -s "$T/site/initramfs-wasm32_nommu.cpio.gz" \
        <(cat "$ws/upstream/install/initramfs-wasm32_nommu/initramfs.cpio.gz" "$ws/build/wasm-wasm32_nommu-overlay.cpio.gz")
}
site_complete() {
    local f
    for f in index.html lwnet-page.js linux.js linux-worker.js xterm.js xterm.css vmlinux-wasm32_nommu.wasm \
        initramfs-wasm32_nommu.cpio.gz lwnet/js/main.js lwnet/js/link-worker.js lwnet/js/worker.js lwnet/js/shim.js lwnet/js/store.js \
        lwnet/wasm/lwhost_web.wasm; do
        [ -s "$T/site/$f" ] || { echo "site/$f is missing"; return 1; }
    done
    grep -q 'lwnet-page.js' "$T/site/index.html" || { echo "site/index.html is not lwnet's page"; return 1; }
    # The kernel imports the lwnet host ABI (the series is built in) ...
    "$LW_ROOT/target/debug/wasm-imports" "$T/site/vmlinux-wasm32_nommu.wasm" >"$T/imports.txt" || return 1
    grep -qx 'env wasm_net_read func' "$T/imports.txt" || { echo "vmlinux does not import wasm_net_read"; return 1; }
}
unsupplied_import_fails() {
    # ... and an import nobody supplies fails the build, named.
    echo "void wasm_fake_unsupplied(void);" >>"$ktree/arch/wasm/include/asm/fake_host.h"
    ! build "$T/third.log" && grep -q 'env wasm_fake_unsupplied func' "$T/third.log"
}
wasm64_stops() {
    : >"$verbs"
    ! build "$T/w64.log" LW_VARIANT=wasm64_nommu && grep -q 'wasm64_nommu is not supported' "$T/w64.log" && [ ! -s "$verbs" ]
}
offline_stops() {
    local start=$SECONDS
    ! env -u LW_UPSTREAM LW_TARGET=wasm LW_WORKSPACE="$T/offline" LW_SRC="$T/offline/src" LW_BUILD="$T/offline/build" \
        LW_INSTALL="$T/offline/install" LW_UPSTREAM_URL=https://127.0.0.1:9/linux-wasm.git \
        "$LW_ROOT/linux-wasm.sh" build >"$T/offline.log" 2>&1 &&
        grep -q '127.0.0.1:9 (upstream linux-wasm) could not be reached' "$T/offline.log" && [ $((SECONDS - start)) -lt 20 ]
}

rc=0
lw_check wasm_build.first_run_fetches_and_builds first_build || rc=1
lw_check wasm_build.rerun_reuses_sources second_build || rc=1
lw_check wasm_build.series_applied_once series_once || rc=1
lw_check wasm_build.fragment_in_defconfig fragment_merged || rc=1
lw_check wasm_build.initramfs_segment segment_has_tools || rc=1
lw_check wasm_build.site_assembled site_complete || rc=1
lw_check wasm_build.unsupplied_import_fails unsupplied_import_fails || rc=1
lw_check wasm_build.wasm64_stops wasm64_stops || rc=1
lw_check wasm_build.offline_stops offline_stops || rc=1
[ "$rc" -eq 0 ] || lw_warn "logs of the failed build test were in $T (removed)"
exit $rc
