#!/usr/bin/env bash
# Builds the wasm (production) target: upstream linux-wasm at a pinned commit,
# built by its own script, with our kernel series inserted after upstream's
# patches, our config fragment merged, our guest tools (against upstream's musl
# sysroot) added to the initramfs and our runtime patch applied; then the
# deployable site/ is assembled. Needs network access (upstream's sources and
# LLVM); without it, stops at once and says what it could not reach.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

# The README-era commit of upstream named in shared/DESIGN.md section 3.
UPSTREAM_URL=${LW_UPSTREAM_URL:-https://github.com/joelseverin/linux-wasm.git}
UPSTREAM_REF=${LW_UPSTREAM_REF:-f8e0c54ac713d89192f2832e655182d26cec2231}
UP_WORKSPACE=$LW_WORKSPACE/upstream       # upstream's own LW_WORKSPACE
UP_TREE=${LW_UPSTREAM:-$LW_SRC/linux-wasm-upstream}
SITE=$LW_ROOT/site
REACH_TIMEOUT=5

usage() {
    cat <<USAGE
Usage: [LW_UPSTREAM_REF=COMMIT] [LW_UPSTREAM=DIR] ./linux-wasm.sh build

Builds the wasm target into $SITE:
  1. fetches upstream linux-wasm at $UPSTREAM_REF (or uses the checkout in LW_UPSTREAM)
  2. adds patches/kernel/*.patch after upstream's own kernel patches, and
     patches/config/*.config to its kernel defconfig
  3. runs upstream's linux-wasm.sh (it fetches and builds LLVM, the kernel, musl,
     BusyBox and the initramfs: hours on two cores)
  4. builds lwtcp, lwpkg, lwsync for wasm32 against upstream's musl sysroot and adds
     them, with our init, to the initramfs
  5. applies patches/runtime/*.patch to upstream's runtime and assembles site/
     (kernel, initramfs, runtime, host shim glue). Serve it with ./linux-wasm.sh serve.
Needs network access; without it, use LW_TARGET=um (the offline native system).
USAGE
}

case "${1:-}" in -h | --help) usage; exit 0 ;; '') ;; *) echo "error: build takes no arguments for LW_TARGET=wasm" >&2; exit 2 ;; esac

offline() {
    lw_die "the wasm target needs network access, and $1 could not be reached (${REACH_TIMEOUT} s timeout).
       Nothing was changed. For the offline native system use: LW_TARGET=um ./linux-wasm.sh build
       (or ./linux-wasm.sh run / test, which use it). With upstream already checked out, point
       LW_UPSTREAM=DIR at it; its own script still downloads LLVM, the kernel, musl and BusyBox."
}

# reachable URL: an HTTPS answer (any status) within the timeout.
reachable() {
    curl -sS -o /dev/null --connect-timeout "$REACH_TIMEOUT" --max-time $((REACH_TIMEOUT * 2)) -I "$1" 2>/dev/null
}

lw_need_apt "${LW_APT_BASE[@]}"

# 1. Upstream, checked for reachability first so an offline machine fails fast.
if [ -n "${LW_UPSTREAM:-}" ]; then
    [ -x "$UP_TREE/linux-wasm.sh" ] || lw_die "LW_UPSTREAM=$UP_TREE has no linux-wasm.sh"
    lw_info "wasm: using upstream checkout $UP_TREE"
else
    host=${UPSTREAM_URL#*://}
    host=${host%%/*}
    reachable "https://$host/" || offline "$host (upstream linux-wasm)"
    if [ ! -d "$UP_TREE/.git" ] || [ "$(git -C "$UP_TREE" rev-parse HEAD 2>/dev/null)" != "$UPSTREAM_REF" ]; then
        lw_info "wasm: fetching upstream linux-wasm $UPSTREAM_REF"
        mkdir -p "$UP_TREE"
        git -C "$UP_TREE" init -q
        git -C "$UP_TREE" -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=30 \
            fetch -q --depth 1 "$UPSTREAM_URL" "$UPSTREAM_REF" || lw_die "could not fetch $UPSTREAM_REF from $UPSTREAM_URL"
        git -C "$UP_TREE" checkout -q -f FETCH_HEAD
    fi
fi

# Upstream's script downloads its components itself: check every host it names.
hosts=$(grep -oE 'https?://[A-Za-z0-9.-]+' "$UP_TREE/linux-wasm.sh" | sed 's|.*://||' | sort -u || true)
for h in $hosts; do
    reachable "https://$h/" || reachable "http://$h/" || offline "$h (named by upstream's linux-wasm.sh)"
done

# 2. Our kernel series after upstream's, renumbered to sort last; our config.
kdir=$UP_TREE/patches/kernel
[ -d "$kdir" ] || lw_die "upstream has no patches/kernel/ at $UP_TREE; is LW_UPSTREAM_REF right?"
rm -f "$kdir"/*-lwnet-series-*.patch
last=$(find "$kdir" -maxdepth 1 -name '[0-9]*.patch' -printf '%f\n' | sed 's/^\([0-9]*\).*/\1/' | sort -n | tail -n1)
n=$((10#${last:-0}))
for p in "$LW_ROOT"/patches/kernel/*.patch; do
    n=$((n + 1))
    cp "$p" "$kdir/$(printf '%04d' "$n")-lwnet-series-${p##*/}"
done
lw_info "wasm: our kernel series follows upstream's patches in $kdir"

# 3. Upstream's build, in its own workspace.
up_env=(LW_WORKSPACE="$UP_WORKSPACE" LW_SRC="$UP_WORKSPACE/src" LW_BUILD="$UP_WORKSPACE/build"
    LW_INSTALL="$UP_WORKSPACE/install")
mkdir -p "$UP_WORKSPACE" "$LW_BUILD/logs"
lw_info "wasm: upstream fetch (log: $LW_BUILD/logs/upstream-fetch.log)"
(cd "$UP_TREE" && env "${up_env[@]}" ./linux-wasm.sh fetch) 2>&1 | tee "$LW_BUILD/logs/upstream-fetch.log" | grep -E '^(==|\[|Fetch|Clon)' || true
[ "${PIPESTATUS[0]}" -eq 0 ] || lw_die "upstream fetch failed; see $LW_BUILD/logs/upstream-fetch.log"

defconfig=$(find "$UP_WORKSPACE/src" -path '*/arch/wasm/configs/*defconfig' 2>/dev/null | head -n1 || true)
[ -n "$defconfig" ] || lw_die "wasm: no arch/wasm/configs/*defconfig in upstream's kernel source"
sed -i '/^# lwnet config begin/,/^# lwnet config end/d' "$defconfig"
{
    echo "# lwnet config begin"
    cat "$LW_ROOT"/patches/config/*.config
    echo "# lwnet config end"
} >>"$defconfig"
lw_info "wasm: merged patches/config into ${defconfig#"$UP_WORKSPACE"/}"

lw_info "wasm: upstream build: LLVM, kernel, musl, BusyBox, initramfs (hours; log: $LW_BUILD/logs/upstream-build.log)"
(cd "$UP_TREE" && env "${up_env[@]}" nice ./linux-wasm.sh build) >"$LW_BUILD/logs/upstream-build.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    sleep 60
    lw_info "wasm: upstream build running: $(tail -n1 "$LW_BUILD/logs/upstream-build.log" | cut -c1-100)"
done
wait "$pid" || { tail -n 40 "$LW_BUILD/logs/upstream-build.log" >&2; lw_die "upstream build failed"; }

# 4. Guest tools against upstream's musl sysroot, added to the initramfs as a
# second cpio segment (the kernel unpacks concatenated archives in order, so
# our /init and files win).
sysroot=$UP_WORKSPACE/install/musl
[ -d "$sysroot" ] || lw_die "wasm: upstream's musl sysroot $sysroot is missing"
lw_info "wasm: guest tools for wasm32 against $sysroot"
# build-guest.sh links against $LW_INSTALL/musl with $LW_INSTALL/llvm's clang: upstream's.
LW_INSTALL=$UP_WORKSPACE/install bash "$LW_ROOT/tools/build-guest.sh" --target wasm32
gbin=$LW_BUILD/wasm-guest-bin
rm -rf "$gbin" && mkdir -p "$gbin"
for t in lwtcp lwpkg lwsync; do
    cp "$LW_ROOT/guest/target/wasm32-musl/wasm32-unknown-unknown/release/$t.wasm" "$gbin/$t" ||
        lw_die "wasm: $t.wasm was not built"
done
bash "$LW_ROOT/tools/initramfs.sh" --overlay "$LW_BUILD/wasm-overlay.cpio.gz" "$gbin"
mkdir -p "$SITE"
cat "$UP_WORKSPACE/install/initramfs/initramfs.cpio.gz" "$LW_BUILD/wasm-overlay.cpio.gz" >"$SITE/initramfs.cpio.gz"

# 5. Runtime patch, host shim, site/.
for p in "$LW_ROOT"/patches/runtime/*.patch; do
    [ -f "$p" ] || continue
    if git -C "$UP_TREE" apply --reverse --check "$p" 2>/dev/null; then continue; fi
    git -C "$UP_TREE" apply "$p" || lw_die "wasm: ${p##*/} does not apply to upstream's runtime"
done
cp "$UP_WORKSPACE/install/kernel/vmlinux.wasm" "$SITE/vmlinux.wasm"
cp -r "$UP_TREE"/runtime/. "$SITE/"
webout=$(bash "$LW_ROOT/host/web/build.sh" build)
cp "$webout"/*.wasm "$SITE/"
[ ! -d "$LW_ROOT/host/web/js" ] || cp -r "$LW_ROOT"/host/web/js/. "$SITE/"
lw_info "wasm: site assembled in $SITE; serve it with ./linux-wasm.sh serve"
