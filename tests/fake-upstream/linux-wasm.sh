#!/usr/bin/env bash
# A stand-in for upstream linux-wasm's build script, written by lwnet for its
# offline tests (tools/test/wasm-build.sh). It reproduces the documented
# interface only: the verbs (all, fetch, build, fetch-X, build-X, all-X for
# llvm, kernel, musl, busybox-kernel-headers, busybox, initramfs; build-tools;
# build-os), the paths (LW_WORKSPACE -> LW_SRC, LW_BUILD, LW_INSTALL;
# LW_VARIANT), a fetch that clones into fixed directories (so a second fetch
# fails), an LLVM build that fails when run twice, a kernel configured with
# `make ${LW_VARIANT}_defconfig`, and variant-suffixed install paths.
# Nothing is downloaded or compiled: the "kernel" is a small wasm module
# (fake-vmlinux.py) whose env imports are the host functions declared by the
# headers of the configured tree, so a missing host function shows up exactly
# as it would with the real kernel.
#
# Every verb is appended to $LW_WORKSPACE/fake-upstream.verbs.
#
# FAKE_KERNEL_SEED=DIR (required by fetch-kernel): files copied into the
# kernel tree before its first commit (the test puts there the pristine
# kernel files the lwnet series modifies, so the series applies as it would).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LW_WORKSPACE=$(realpath -m "${LW_WORKSPACE:-$HERE/workspace}")
LW_SRC=$(realpath -m "${LW_SRC:-$LW_WORKSPACE/src}")
LW_BUILD=$(realpath -m "${LW_BUILD:-$LW_WORKSPACE/build}")
LW_INSTALL=$(realpath -m "${LW_INSTALL:-$LW_WORKSPACE/install}")
LW_VARIANT=${LW_VARIANT:-wasm32_nommu}
COMPONENTS=(llvm kernel musl busybox-kernel-headers busybox initramfs)

die() { echo "fake-upstream: $*" >&2; exit 1; }

verb=${1:-}
mkdir -p "$LW_WORKSPACE"
echo "$verb" >>"$LW_WORKSPACE/fake-upstream.verbs"

case "$LW_VARIANT" in wasm32_nommu | wasm64_nommu) ;; *) die "unknown LW_VARIANT $LW_VARIANT" ;; esac

# clone_into DIR: like `git clone URL DIR`, which refuses a non-empty DIR.
clone_into() {
    local dir=$1 origin=$2
    mkdir -p "$dir"
    if [ -n "$(ls -A "$dir")" ]; then
        echo "fatal: destination path '$dir' already exists and is not an empty directory." >&2
        exit 128
    fi
    git clone -q --depth 1 "file://$origin" "$dir"
}

# origin_repo NAME SETUP-FUNCTION: a throwaway origin repository with two
# commits (so the depth-1 clone is shallow, as upstream's are).
origin_repo() {
    local name=$1 setup=$2 dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/fake-upstream-$name.XXXXXX")
    git -C "$dir" init -q
    echo "$name" >"$dir/README"
    fake_git "$dir" add -A && fake_git "$dir" commit -q -m "$name: base"
    "$setup" "$dir"
    fake_git "$dir" add -A && fake_git "$dir" commit -q -m "$name: wasm port"
    echo "$dir"
}
fake_git() { local d=$1; shift; git -C "$d" -c user.name=fake -c user.email=fake@upstream.invalid "$@"; }

setup_none() { :; }
setup_kernel() {
    local dir=$1
    if [ -z "${FAKE_KERNEL_SEED:-}" ] || [ ! -d "$FAKE_KERNEL_SEED" ]; then die "fetch-kernel needs FAKE_KERNEL_SEED=DIR"; fi
    cp -a "$FAKE_KERNEL_SEED"/. "$dir/"
    cp -a "$HERE/kernel"/. "$dir/"
}

fetch() {
    local origin
    case "$1" in
        llvm | musl | busybox) origin=$(origin_repo "$1" setup_none) ;;
        kernel) origin=$(origin_repo kernel setup_kernel) ;;
        *) return 0 ;; # busybox-kernel-headers, initramfs: nothing to fetch
    esac
    clone_into "$LW_SRC/$1" "$origin"
    rm -rf "$origin"
}

build() {
    case "$1" in
        llvm)
            # Upstream's README: building LLVM a second time fails.
            [ ! -e "$LW_BUILD/llvm" ] || die "CMake Error: the LLVM build directory $LW_BUILD/llvm exists (second build)"
            [ -d "$LW_SRC/llvm/.git" ] || die "no LLVM source in $LW_SRC/llvm"
            mkdir -p "$LW_BUILD/llvm" "$LW_INSTALL/llvm/bin"
            printf '#!/bin/sh\necho "fake clang: not a compiler" >&2\nexit 1\n' >"$LW_INSTALL/llvm/bin/clang"
            chmod +x "$LW_INSTALL/llvm/bin/clang" ;;
        kernel)
            [ -x "$LW_INSTALL/llvm/bin/clang" ] || die "no LLVM in $LW_INSTALL/llvm (build-tools first)"
            local src=$LW_SRC/kernel out=$LW_BUILD/kernel-$LW_VARIANT inst=$LW_INSTALL/kernel-$LW_VARIANT
            local defconfig=$src/arch/wasm/configs/${LW_VARIANT}_defconfig
            [ -f "$defconfig" ] || die "make: *** No rule to make target '${LW_VARIANT}_defconfig'"
            mkdir -p "$out" "$inst"
            python3 "$HERE/fake-vmlinux.py" config "$src" "$defconfig" "$out/.config"
            python3 "$HERE/fake-vmlinux.py" link "$src" "$out/.config" "$out/vmlinux"
            cp "$out/vmlinux" "$inst/vmlinux.wasm" ;;
        musl)
            mkdir -p "$LW_INSTALL/musl-$LW_VARIANT/lib" "$LW_INSTALL/musl-$LW_VARIANT/include"
            : >"$LW_INSTALL/musl-$LW_VARIANT/lib/libc.a" ;;
        busybox-kernel-headers) mkdir -p "$LW_INSTALL/busybox-kernel-headers-$LW_VARIANT" ;;
        busybox)
            mkdir -p "$LW_INSTALL/busybox-$LW_VARIANT/bin"
            echo "fake busybox" >"$LW_INSTALL/busybox-$LW_VARIANT/bin/busybox" ;;
        initramfs)
            local root
            root=$(mktemp -d)
            mkdir -p "$root/bin" "$root/dev"
            cp "$LW_INSTALL/busybox-$LW_VARIANT/bin/busybox" "$root/bin/"
            printf '#!/bin/sh\necho fake upstream init\n' >"$root/init"
            mkdir -p "$LW_INSTALL/initramfs-$LW_VARIANT"
            (cd "$root" && find . | cpio --quiet -o -H newc) | gzip -n >"$LW_INSTALL/initramfs-$LW_VARIANT/initramfs.cpio.gz"
            rm -rf "$root" ;;
    esac
}

run_all() { local c; for c in "${COMPONENTS[@]}"; do "$1" "$c"; done; }

case "$verb" in
    all) run_all fetch; run_all build ;;
    fetch) run_all fetch ;;
    build) run_all build ;;
    build-tools) build llvm ;;
    build-os) for c in "${COMPONENTS[@]:1}"; do build "$c"; done ;;
    fetch-* | build-* | all-*)
        c=${verb#*-}
        printf '%s\n' "${COMPONENTS[@]}" | grep -qx -- "$c" || { echo "Unknown action parameter: $verb" >&2; exit 1; }
        case "$verb" in
            fetch-*) fetch "$c" ;;
            build-*) build "$c" ;;
            all-*) fetch "$c"; build "$c" ;;
        esac ;;
    *) echo "Unknown action parameter: $verb" >&2; exit 1 ;;
esac
