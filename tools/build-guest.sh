#!/usr/bin/env bash
# Builds the guest tools (lwtcp, lwpkg, lwsync) in release mode and prints
# their sizes against the limits.
#   x86_64: static x86_64-unknown-linux-musl binaries for the native um system,
#           in guest/target/x86_64-unknown-linux-musl/release/.
#   wasm32: linux-wasm user programs (upstream's user-program ABI: dylink.0,
#           PIC, the kernel's shared memory, __wasm_syscall_N), in
#           guest/target/wasm32-linux/wasm32-unknown-unknown/release/; the
#           flags and why are at build_wasm32 below. No upstream toolchain
#           or sysroot is needed.
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

# The wasm32 tools are linux-wasm user programs exactly as upstream's kernel
# (fs/binfmt_wasm.c) and runtime (runtime/linux-worker.js) run them, built
# here with no sysroot: the tools are no_std and make system calls directly
# (guest/lwguest/src/syscall.rs), so only core and alloc are compiled, from
# rust-src (build-std, offline). Flags, and why:
#   -Ctarget-cpu=mvp + the four features: upstream's programs use exactly
#       atomics, bulk-memory, mutable-globals and sign-ext; current rustc
#       would also enable reference-types, multivalue, nontrapping-fptoint.
#   -Crelocation-model=pic, --experimental-pic -shared: a position-independent
#       module whose first section is dylink.0 (MEM_INFO); the kernel maps its
#       data at __memory_base.
#   -Bsymbolic: own symbols resolve inside the module (no GOT.* imports).
#   --import-memory --shared-memory --max-memory=4294967296: the kernel's
#       shared memory (65536 pages); rustc's default 1 GiB maximum with
#       atomics would not match it and instantiation would fail.
#   -Zbuild-std=core,alloc: the prebuilt core/alloc are neither PIC nor built
#       with atomics. RUSTC_BOOTSTRAP=1 allows -Z on the stable toolchain.
#   panic=abort (profile): a panic prints "internal error" and exits 101.
WASM_TARGET_DIR=target/wasm32-linux
WASM_OUT=$WASM_TARGET_DIR/wasm32-unknown-unknown/release
WASM_RUSTFLAGS="-C target-cpu=mvp -C target-feature=+atomics,+bulk-memory,+mutable-globals,+sign-ext \
-C relocation-model=pic -C link-arg=--experimental-pic -C link-arg=-shared -C link-arg=-Bsymbolic \
-C link-arg=--import-memory -C link-arg=--shared-memory -C link-arg=--max-memory=4294967296"

build_wasm32() {
    lw_info "guest tools: wasm32 linux-wasm user programs (PIC, shared memory, direct syscalls)"
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="$WASM_RUSTFLAGS" \
        cargo build --release --target wasm32-unknown-unknown -Zbuild-std=core,alloc \
        --target-dir "$WASM_TARGET_DIR" >&2
    echo "wasm32 linux-wasm (guest/$WASM_OUT):"
    report "$WASM_OUT" .wasm yes
}

rc=0
case "$target" in
    x86_64) build_x86_64 || rc=1 ;;
    wasm32) build_wasm32 || rc=1 ;;
    all) { build_x86_64 && build_wasm32; } || rc=1 ;;
esac
exit $rc
