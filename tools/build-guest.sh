#!/usr/bin/env bash
# Builds the guest tools (lwtcp, lwpkg, lwsync) in release mode and prints
# their sizes against the limits.
#   x86_64: static x86_64-unknown-linux-musl binaries for the native um system,
#           in guest/target/x86_64-unknown-linux-musl/release/.
#   wasm32: with upstream's musl sysroot ($LW_INSTALL/musl) the tools link
#           against it with upstream's clang (atomics + bulk-memory, as
#           upstream builds its programs); without it (these machines) a
#           wasm32-unknown-unknown build whose libc functions are imports
#           from "env", which tools/guest-harness supplies.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

usage() {
    cat <<USAGE
Usage: tools/build-guest.sh [--target x86_64|wasm32|all] [--help]

Builds lwtcp, lwpkg and lwsync (release) and prints their sizes.
Limits (wasm32, stripped): lwtcp <= 64 KiB, lwsync <= 200 KiB, lwpkg <= 400 KiB.
USAGE
}

target=all
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target=${2:?--target needs x86_64, wasm32 or all}; shift 2 ;;
        --target=*) target=${1#--target=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 1 ;;
    esac
done
case "$target" in x86_64 | wasm32 | all) ;; *) lw_die "unknown target '$target' (x86_64, wasm32 or all)" ;; esac

lw_need_rust
cd "$LW_ROOT/guest"
TOOLS=(lwtcp lwpkg lwsync)

limit_kib() {
    case "$1" in lwtcp) echo 64 ;; lwsync) echo 200 ;; lwpkg) echo 400 ;; esac
}

# report DIR SUFFIX ENFORCE: prints each tool's size; with ENFORCE, fails over the limit.
report() {
    local dir=$1 suffix=$2 enforce=$3 t size lim over=0
    for t in "${TOOLS[@]}"; do
        size=$(stat -c %s "$dir/$t$suffix")
        lim=$(limit_kib "$t")
        printf '  %-7s %8d bytes (%d KiB, limit %d KiB)\n' "$t" "$size" $(((size + 1023) / 1024)) "$lim"
        if [ "$enforce" = yes ] && [ "$size" -gt $((lim * 1024)) ]; then
            lw_warn "$t is over its size limit"
            over=1
        fi
    done
    return $over
}

build_x86_64() {
    lw_info "guest tools: x86_64-unknown-linux-musl (static)"
    cargo build --release --target x86_64-unknown-linux-musl >&2
    echo "x86_64-unknown-linux-musl (guest/target/x86_64-unknown-linux-musl/release):"
    report target/x86_64-unknown-linux-musl/release "" no
}

build_wasm32() {
    local sysroot=$LW_INSTALL/musl clang=$LW_INSTALL/llvm/bin/clang
    if [ -d "$sysroot" ] && [ -x "$clang" ]; then
        # Upstream's programs: --target=wasm32-unknown-unknown, +atomics,
        # +bulk-memory, -fPIC, linked by clang against the musl sysroot.
        # Not exercised on these machines (no sysroot): treat as untested.
        lw_info "guest tools: wasm32 against $sysroot"
        RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals -C relocation-model=pic \
-C linker=$clang -C linker-flavor=gcc -C link-arg=--target=wasm32-unknown-unknown -C link-arg=--sysroot=$sysroot \
-C link-arg=-fPIC" \
            cargo build --release --target wasm32-unknown-unknown --features lwguest/wasm-musl \
            -Zbuild-std=core,alloc -Zbuild-std-features=panic_immediate_abort \
            --target-dir target/wasm32-musl >&2
        echo "wasm32 (musl sysroot, guest/target/wasm32-musl/wasm32-unknown-unknown/release):"
        report target/wasm32-musl/wasm32-unknown-unknown/release .wasm yes
    else
        lw_info "guest tools: wasm32 with libc imported from \"env\" (no sysroot at $sysroot)"
        cargo build --release --target wasm32-unknown-unknown >&2
        echo "wasm32 (env imports, guest/target/wasm32-unknown-unknown/release):"
        report target/wasm32-unknown-unknown/release .wasm yes
    fi
}

rc=0
case "$target" in
    x86_64) build_x86_64 || rc=1 ;;
    wasm32) build_wasm32 || rc=1 ;;
    all) { build_x86_64 && build_wasm32; } || rc=1 ;;
esac
exit $rc
