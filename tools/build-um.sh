#!/usr/bin/env bash
# Builds the native (um) system: a user-mode Linux kernel from Debian's
# linux-source-6.12 with our series and config, the x86_64 guest tools, the
# host programs (lwhost, lwproxy, lwpkg-index), the initramfs and the demo
# package registry. Every step keeps a stamp of its inputs, so a second build
# with nothing changed takes seconds.
#
#   tools/build-um.sh [STEP...]     steps: kernel guest host demo initramfs (default: all)
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

UM_KVER=6.12
UM_TREE=$LW_BUILD/linux-$UM_KVER     # patched source, shared with other users of tools/kernel.sh
UM_OUT=$LW_BUILD/um-linux-$UM_KVER   # our O= build directory, so the tree stays clean
UM_INSTALL=$LW_INSTALL/um
UM_LOGS=$LW_BUILD/logs
GUEST_TRIPLE=x86_64-unknown-linux-musl
GUEST_BIN=$LW_ROOT/guest/target/$GUEST_TRIPLE/release
GUEST_TOOLS=(lwtcp lwpkg lwsync)

usage() {
    cat <<USAGE
Usage: LW_TARGET=um ./linux-wasm.sh build [STEP...]

Builds the native user-mode Linux system into $UM_INSTALL:
  kernel     linux-source-$UM_KVER + patches/kernel + patches/config, ARCH=um (a few minutes once)
  guest      lwtcp, lwpkg, lwsync for $GUEST_TRIPLE
  host       lwhost, lwproxy, lwpkg-index (cargo --release)
  demo       the demo page and signed package registry that 'run' serves on loopback
  initramfs  BusyBox, the guest tools, initramfs/init and the demo registry's key
Steps are skipped when their inputs did not change. Default: all, in that order.
USAGE
}

# stamp_ok NAME HASH: the step NAME last succeeded with inputs HASH.
stamp_ok() { [ -f "$UM_INSTALL/.stamp-$1" ] && [ "$(cat "$UM_INSTALL/.stamp-$1")" = "$2" ]; }
stamp_set() { mkdir -p "$UM_INSTALL" && printf '%s\n' "$2" >"$UM_INSTALL/.stamp-$1"; }

# hash_files FILE...: one hash over names and contents (missing files count as absent).
hash_files() {
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        printf '%s\n' "${f#"$LW_ROOT"/}"
        sha256sum <"$f"
    done | sha256sum | cut -d' ' -f1
}

# with_progress LABEL LOG CMD...: runs CMD with its output in LOG, printing a
# line every 20 s so a long step is visibly alive; on failure shows the log tail.
with_progress() {
    local label=$1 log=$2 start=$SECONDS pid rc=0 next=20
    shift 2
    mkdir -p "$(dirname "$log")"
    "$@" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if ((SECONDS - start >= next)); then
            next=$((next + 20))
            lw_info "$label: $((SECONDS - start)) s, $(grep -cE '^  (CC|LD|AR|AS)' "$log" || true) objects so far"
        fi
    done
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log" >&2
        lw_die "$label failed (exit $rc); full log: $log"
    fi
    lw_info "$label: done in $((SECONDS - start)) s"
}

step_kernel() {
    # shellcheck source=tools/kernel.sh
    source "$LW_ROOT/tools/kernel.sh"
    local frags=("$LW_ROOT/tools/um-system.config") f
    for f in "$LW_ROOT"/patches/config/*.config; do [ -f "$f" ] && frags+=("$f"); done
    local want
    want=$({
        lw_kernel_series_sha
        hash_files "${frags[@]}"
        gcc --version | head -n1
    } | sha256sum | cut -d' ' -f1)
    if stamp_ok kernel "$want" && [ -x "$UM_INSTALL/linux" ]; then
        lw_info "kernel: up to date ($UM_INSTALL/linux)"
        return 0
    fi
    lw_need_apt "${LW_APT_BASE[@]}" "${LW_APT_KERNEL[@]}"
    lw_kernel_tree "$UM_KVER" "$UM_TREE"
    mkdir -p "$UM_OUT"
    lw_info "kernel: configuring ARCH=um defconfig + ${#frags[@]} fragment(s)"
    make -s -C "$UM_TREE" O="$UM_OUT" ARCH=um defconfig >"$UM_LOGS/um-config.log" 2>&1 ||
        { cat "$UM_LOGS/um-config.log" >&2; lw_die "kernel: defconfig failed"; }
    # merge_config.sh runs make in the current directory; it needs the tree.
    (cd "$UM_TREE" && ARCH=um scripts/kconfig/merge_config.sh -O "$UM_OUT" "$UM_OUT/.config" "${frags[@]}") \
        >>"$UM_LOGS/um-config.log" 2>&1 || { cat "$UM_LOGS/um-config.log" >&2; lw_die "kernel: merging the config fragments failed"; }
    # merge_config.sh only warns when an option did not make it; the driver
    # silently missing from the kernel would be far worse, so check each one.
    local line opt missing=()
    for f in "${frags[@]}"; do
        while IFS= read -r line; do
            case "$line" in
                CONFIG_*=*) grep -qxF "$line" "$UM_OUT/.config" || missing+=("$line (${f##*/})") ;;
                "# CONFIG_"*" is not set")
                    opt=${line#\# }
                    opt=${opt%% *}
                    ! grep -q "^$opt=" "$UM_OUT/.config" || missing+=("$line (${f##*/})") ;;
            esac
        done <"$f"
    done
    if [ ${#missing[@]} -gt 0 ]; then
        printf '  %s\n' "${missing[@]}" >&2
        lw_die "kernel: these config options did not survive the merge (missing dependencies?)"
    fi
    with_progress "kernel: nice make -j2 ARCH=um (log: $UM_LOGS/um-kernel.log)" "$UM_LOGS/um-kernel.log" \
        nice make -C "$UM_TREE" O="$UM_OUT" ARCH=um -j2 linux
    mkdir -p "$UM_INSTALL"
    cp -f "$UM_OUT/linux" "$UM_INSTALL/linux.new" && mv -f "$UM_INSTALL/linux.new" "$UM_INSTALL/linux"
    stamp_set kernel "$want"
    lw_info "kernel: $UM_INSTALL/linux"
}

step_guest() {
    if [ ! -f "$LW_ROOT/guest/Cargo.toml" ]; then
        lw_warn "guest: guest/Cargo.toml is not there yet; the initramfs will have no lwtcp/lwpkg/lwsync"
        return 0
    fi
    lw_need_rust
    lw_info "guest: building ${GUEST_TOOLS[*]} for $GUEST_TRIPLE"
    if [ -f "$LW_ROOT/tools/build-guest.sh" ]; then
        bash "$LW_ROOT/tools/build-guest.sh" --target x86_64
    else
        cargo build --release -q --target "$GUEST_TRIPLE" --manifest-path "$LW_ROOT/guest/Cargo.toml"
    fi
    local t
    for t in "${GUEST_TOOLS[@]}"; do
        [ -x "$GUEST_BIN/$t" ] || lw_warn "guest: $GUEST_BIN/$t was not built"
    done
}

step_host() {
    lw_need_apt "${LW_APT_BASE[@]}"
    lw_need_rust
    lw_info "host: building lwhost, lwproxy, lwpkg-index (release)"
    lw_build_host
}

step_initramfs() {
    lw_need_apt "${LW_APT_SYSTEM[@]}"
    bash "$LW_ROOT/tools/initramfs.sh" "$UM_INSTALL/initramfs.cpio.gz" "$GUEST_BIN" "$UM_INSTALL/demo/demo.pub"
}

step_demo() {
    bash "$LW_ROOT/tools/demo-registry.sh" build
}

main() {
    local steps=() s
    for s in "$@"; do
        case "$s" in
            -h | --help) usage; return 0 ;;
            kernel | guest | host | demo | initramfs) steps+=("$s") ;;
            *) echo "error: unknown build step '$s'" >&2; usage >&2; exit 2 ;;
        esac
    done
    [ ${#steps[@]} -gt 0 ] || steps=(kernel guest host demo initramfs)
    mkdir -p "$UM_LOGS" "$UM_INSTALL"
    # One build at a time (a test tier and a user's run may start together).
    local lockfd
    exec {lockfd}>"$UM_INSTALL/.build.lock"
    if ! flock -n "$lockfd"; then
        lw_info "waiting for another um build to finish"
        flock "$lockfd"
    fi
    local start=$SECONDS
    for s in "${steps[@]}"; do "step_$s"; done
    lw_info "um build complete in $((SECONDS - start)) s: $UM_INSTALL"
}

main "$@"
