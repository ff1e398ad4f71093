#!/usr/bin/env bash
# Builds the wasm (production) target by driving upstream linux-wasm's own
# script at a pinned commit: upstream fetches its kernel fork, LLVM, musl and
# BusyBox; we apply the wasm part of our kernel series to the fetched kernel
# with `git am`, merge our config fragment into ${LW_VARIANT}_defconfig, let
# upstream build, check the result (config options, vmlinux's env imports),
# add our guest tools as an initramfs segment and assemble site/.
# Without network access it stops at once and says what it could not reach.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
# shellcheck source=tools/kernel.sh
source "$LW_ROOT/tools/kernel.sh"

# The pinned upstream commit: 3103d5c ("runtime: Unify wasm64 hack into the
# general wasm32 code", 2026-05-14), the newest commit of upstream's public
# history. Verified against it: the verbs and paths this script uses (its
# linux-wasm.sh), the page's file names (runtime/index.html) and that
# patches/runtime/*.patch applies (git apply --check).
UPSTREAM_URL=${LW_UPSTREAM_URL:-https://github.com/joelseverin/linux-wasm.git}
UPSTREAM_REF=${LW_UPSTREAM_REF:-3103d5c877a8f6251b4b451c866a46941fd1fab3}
VARIANT=${LW_VARIANT:-wasm32_nommu}
UP_TREE=${LW_UPSTREAM:-$LW_SRC/linux-wasm-upstream}
UP_WORKSPACE=$LW_WORKSPACE/upstream # upstream's own LW_WORKSPACE
UP_SRC=$UP_WORKSPACE/src
UP_BUILD=$UP_WORKSPACE/build
UP_INSTALL=$UP_WORKSPACE/install
SITE=${LW_SITE:-$LW_ROOT/site}
FRAGMENT=$LW_ROOT/patches/config/lwnet.config
REACH_TIMEOUT=5
# The sources upstream's `fetch` clones, each into $UP_SRC/NAME.
FETCHED=(llvm kernel musl busybox)

usage() {
    cat <<USAGE
Usage: [LW_VARIANT=wasm32_nommu] [LW_UPSTREAM_REF=COMMIT | LW_UPSTREAM=DIR] ./linux-wasm.sh build

Builds the wasm target into $SITE (hours the first time: upstream builds LLVM):
  1. upstream linux-wasm at $UPSTREAM_REF (LW_UPSTREAM_REF=COMMIT for another
     commit, LW_UPSTREAM=DIR for a checkout of your own)
  2. upstream's fetch, once: its kernel fork into workspace/upstream/src/kernel,
     LLVM, musl, BusyBox (a re-run reuses them and needs no network)
  3. our kernel series (the patches marked for wasm) applied there with git am,
     once; patches/config/lwnet.config merged into ${VARIANT}_defconfig
  4. upstream's build-tools (LLVM, first run only) and build-os (kernel, musl,
     BusyBox, initramfs); every option of the fragment checked in the .config;
     every env import of vmlinux.wasm checked against what upstream's runtime
     and our glue supply
  5. lwtcp, lwpkg, lwsync for wasm32 as an initramfs segment after upstream's
  6. site/: our page (index.html, lwnet.json: proxy URL and token), upstream's
     runtime with patches/runtime applied, vmlinux-${VARIANT}.wasm,
     initramfs-${VARIANT}.cpio.gz, the glue in lwnet/. Serve: ./linux-wasm.sh serve
LW_VARIANT: wasm32_nommu (default); wasm64_nommu stops with the reason.
LW_GUEST_BIN=DIR uses prebuilt wasm32 lwtcp, lwpkg, lwsync from DIR.
Without network access (first run), use LW_TARGET=um (the offline native system).
USAGE
}

case "${1:-}" in -h | --help) usage; exit 0 ;; '') ;; *) echo "error: build takes no arguments for LW_TARGET=wasm" >&2; exit 2 ;; esac

case "$VARIANT" in
    wasm32_nommu) ;;
    wasm64_nommu)
        lw_die "LW_VARIANT=wasm64_nommu is not supported: a wasm64 kernel runs only wasm64 programs, and
       lwtcp, lwpkg and lwsync are built for wasm32 only (tools/build-guest.sh). Nothing was changed.
       Use LW_VARIANT=wasm32_nommu (the default)." ;;
    *) lw_die "LW_VARIANT must be wasm32_nommu (or wasm64_nommu, unsupported), not '$VARIANT'" ;;
esac

offline() {
    lw_die "the wasm target needs network access, and $1 could not be reached (${REACH_TIMEOUT} s timeout).
       Nothing was changed. For the offline native system use: LW_TARGET=um ./linux-wasm.sh build
       (or ./linux-wasm.sh run / test, which use it). With upstream already checked out, point
       LW_UPSTREAM=DIR at it; its first build still downloads LLVM, the kernel, musl and BusyBox."
}

# reachable URL: an answer (any status) within the timeout.
reachable() {
    curl -sS -o /dev/null --connect-timeout "$REACH_TIMEOUT" --max-time $((REACH_TIMEOUT * 2)) -I "$1" 2>/dev/null
}

# upstream VERB: runs upstream's script in its own workspace, logged.
upstream() {
    local log=$LW_BUILD/logs/upstream-$1.log
    lw_info "wasm: upstream $1 (log: $log)"
    if ! (cd "$UP_TREE" && env LW_WORKSPACE="$UP_WORKSPACE" LW_SRC="$UP_SRC" LW_BUILD="$UP_BUILD" \
        LW_INSTALL="$UP_INSTALL" LW_VARIANT="$VARIANT" nice ./linux-wasm.sh "$1") >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        lw_die "upstream $1 failed; see $log"
    fi
}

mkdir -p "$LW_BUILD/logs" "$UP_WORKSPACE"

# 1. Upstream's checkout.
if [ -n "${LW_UPSTREAM:-}" ]; then
    [ -x "$UP_TREE/linux-wasm.sh" ] || lw_die "LW_UPSTREAM=$UP_TREE has no executable linux-wasm.sh"
    lw_info "wasm: using upstream checkout $UP_TREE"
elif [ "$(git -C "$UP_TREE" rev-parse -q --verify HEAD 2>/dev/null)" != "$UPSTREAM_REF" ]; then
    lw_need_apt "${LW_APT_BASE[@]}"
    host=${UPSTREAM_URL#*://}
    host=${host%%/*}
    reachable "https://$host/" || offline "$host (upstream linux-wasm)"
    lw_info "wasm: fetching upstream linux-wasm $UPSTREAM_REF"
    mkdir -p "$UP_TREE"
    git -C "$UP_TREE" init -q
    git -C "$UP_TREE" -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=30 \
        fetch -q --depth 1 "$UPSTREAM_URL" "$UPSTREAM_REF" || lw_die "could not fetch $UPSTREAM_REF from $UPSTREAM_URL"
    git -C "$UP_TREE" checkout -q -f FETCH_HEAD
fi

# 2. Upstream's sources, fetched once: its fetch clones into fixed
# directories and fails when they exist, so only missing ones are fetched.
missing=()
for c in "${FETCHED[@]}"; do
    d=$UP_SRC/$c
    if [ -d "$d/.git" ]; then continue; fi
    [ ! -e "$d" ] || [ -z "$(ls -A "$d")" ] ||
        lw_die "wasm: $d is an incomplete fetch (no .git); remove it and run the build again"
    missing+=("$c")
done
if [ ${#missing[@]} -gt 0 ]; then
    # Upstream's script downloads its components itself: check every host it names.
    hosts=$(grep -oE 'https?://[A-Za-z0-9.-]+' "$UP_TREE/linux-wasm.sh" | sed 's|.*://||' | sort -u || true)
    for h in $hosts; do
        reachable "https://$h/" || reachable "http://$h/" || offline "$h (named by upstream's linux-wasm.sh)"
    done
    for c in "${missing[@]}"; do upstream "fetch-$c"; done
else
    lw_info "wasm: upstream sources already fetched in $UP_SRC"
fi

# 3. The wasm part of our kernel series, applied once with git am (upstream
# clones shallowly, so no three-way merge); re-applied from the pristine
# commit when the series changed.
KTREE=$UP_SRC/kernel
# The wasm series: the commits kernel/series marks "all" or "wasm".
series=()
while IFS= read -r p; do series+=("$p"); done < <(bash "$LW_ROOT/tools/kernel-series.sh" list wasm)
[ ${#series[@]} -gt 0 ] || lw_die "wasm: tools/kernel-series.sh lists no kernel patches for wasm"
want=$(for p in "${series[@]}"; do printf '%s\n' "${p##*/}"; cat "$p"; done | sha256sum | cut -d' ' -f1)
stamp=$KTREE/.git/lwnet-series
have_sha="" base="" head=""
[ ! -f "$stamp" ] || read -r have_sha base head <"$stamp" || true
if [ -n "$have_sha" ] && [ "$have_sha" = "$want" ] && [ "$(lw_kernel_git "$KTREE" rev-parse HEAD)" = "$head" ]; then
    lw_info "wasm: the kernel series is already applied in $KTREE"
else
    if [ -n "$base" ]; then
        lw_info "wasm: the kernel series changed; re-applying it from $base"
        lw_kernel_git "$KTREE" am --abort >/dev/null 2>&1 || true
        lw_kernel_git "$KTREE" reset -q --hard "$base"
    else
        for p in "${series[@]}"; do
            subject=$(sed -n 's/^Subject: \(\[PATCH[^]]*\] \)\{0,1\}//p' "$p" | head -n1)
            if lw_kernel_git "$KTREE" log --format=%s | grep -qxF -- "$subject"; then
                lw_die "wasm: $KTREE already has a commit '$subject' but no record of applying the series;
       remove $KTREE and run the build again (upstream's fetch-kernel runs again)"
            fi
        done
        base=$(lw_kernel_git "$KTREE" rev-parse HEAD)
    fi
    lw_info "wasm: applying ${#series[@]} kernel patches to $KTREE"
    if ! lw_kernel_git "$KTREE" am -q --no-3way --no-gpg-sign "${series[@]}" >&2; then
        lw_kernel_git "$KTREE" am --abort >/dev/null 2>&1 || true
        lw_die "wasm: the kernel series does not apply to upstream's kernel at $KTREE"
    fi
    printf '%s %s %s\n' "$want" "$base" "$(lw_kernel_git "$KTREE" rev-parse HEAD)" >"$stamp"
fi

# Our config fragment, merged into the defconfig upstream's build-kernel uses
# (`make ${LW_VARIANT}_defconfig`): later lines win in a defconfig.
defconfig=$KTREE/arch/wasm/configs/${VARIANT}_defconfig
[ -f "$defconfig" ] || lw_die "wasm: upstream's kernel has no arch/wasm/configs/${VARIANT}_defconfig"
sed -i '/^# lwnet config begin/,/^# lwnet config end/d' "$defconfig"
{
    echo "# lwnet config begin"
    grep -E '^(CONFIG_[A-Za-z0-9_]+=|# CONFIG_[A-Za-z0-9_]+ is not set)' "$FRAGMENT"
    echo "# lwnet config end"
} >>"$defconfig"
lw_info "wasm: merged ${FRAGMENT#"$LW_ROOT"/} into arch/wasm/configs/${VARIANT}_defconfig"

# Upstream's runtime with our patch (or already carrying its hooks).
for p in "$LW_ROOT"/patches/runtime/*.patch; do
    [ -f "$p" ] || continue
    if git -C "$UP_TREE" apply --reverse --check "$p" 2>/dev/null; then continue; fi
    if git -C "$UP_TREE" apply --check "$p" 2>/dev/null; then
        git -C "$UP_TREE" apply "$p"
        lw_info "wasm: applied ${p##*/} to upstream's runtime"
    elif grep -q 'lwnet_host' "$UP_TREE/runtime/linux.js" && grep -q 'installLwnet' "$UP_TREE/runtime/linux-worker.js"; then
        lw_info "wasm: upstream's runtime already calls the lwnet hooks; ${p##*/} not needed"
    else
        lw_die "wasm: ${p##*/} does not apply to upstream's runtime at $UP_TREE (LW_UPSTREAM_REF=$UPSTREAM_REF)"
    fi
done

# 4. Upstream's build: LLVM once (a second LLVM build fails), then the OS.
[ -x "$UP_INSTALL/llvm/bin/clang" ] || upstream build-tools
upstream build-os

config=$UP_BUILD/kernel-$VARIANT/.config
vmlinux=$UP_INSTALL/kernel-$VARIANT/vmlinux.wasm
[ -f "$config" ] || lw_die "wasm: upstream's kernel build left no $config"
[ -f "$vmlinux" ] || lw_die "wasm: upstream's kernel build left no $vmlinux"
bad=0
while IFS= read -r opt; do
    case "$opt" in
        "# CONFIG_"*" is not set")
            name=${opt#"# "}
            name=${name%% *}
            ! grep -q "^$name=" "$config" || { lw_warn "$name is set in $config, the fragment unsets it"; bad=1; } ;;
        *) grep -qxF -- "$opt" "$config" || { lw_warn "$opt is not in $config (a dependency missing?)"; bad=1; } ;;
    esac
done < <(grep -E '^(CONFIG_[A-Za-z0-9_]+=|# CONFIG_[A-Za-z0-9_]+ is not set)' "$FRAGMENT")
[ "$bad" = 0 ] || lw_die "wasm: the kernel was not configured as ${FRAGMENT#"$LW_ROOT"/} asks"
lw_info "wasm: every option of ${FRAGMENT#"$LW_ROOT"/} is in kernel-$VARIANT/.config"

# Every env import of vmlinux must be supplied by the runtime's host
# callbacks (its `wasm_...:` properties) or our glue (worker.js's), else a
# CPU's worker fails with a LinkError.
supplied=$LW_BUILD/wasm-$VARIANT-supplied.txt
{
    echo memory
    grep -ohE '^[[:space:]]+wasm_[A-Za-z0-9_]+:' "$UP_TREE/runtime/linux-worker.js" "$LW_ROOT/host/web/js/worker.js" |
        tr -d ' :\t'
} >"$supplied"
cargo build -q -p wasm-imports --manifest-path "$LW_ROOT/Cargo.toml"
if ! unsupplied=$("$LW_ROOT/target/debug/wasm-imports" "$vmlinux" --supplied "$supplied"); then
    [ -n "$unsupplied" ] || lw_die "wasm: could not read the imports of $vmlinux"
    lw_die "wasm: vmlinux.wasm imports what neither upstream's runtime nor lwnet's glue supplies
       (the page would fail with a LinkError):
         ${unsupplied//$'\n'/$'\n'         }"
fi
lw_info "wasm: every env import of vmlinux.wasm is supplied (runtime + lwnet glue)"

# 5. Guest tools as an initramfs segment after upstream's (the kernel
# unpacks concatenated archives in order, so our /init and files win).
gbin=$LW_BUILD/wasm-$VARIANT-guest-bin
rm -rf "$gbin" && mkdir -p "$gbin"
if [ -n "${LW_GUEST_BIN:-}" ]; then
    for t in lwtcp lwpkg lwsync; do
        [ -f "$LW_GUEST_BIN/$t" ] || lw_die "LW_GUEST_BIN=$LW_GUEST_BIN has no $t"
        cp "$LW_GUEST_BIN/$t" "$gbin/$t"
    done
else
    # linux-wasm user programs built here (no sysroot or upstream toolchain:
    # the tools make system calls directly; see tools/build-guest.sh).
    lw_info "wasm: guest tools for wasm32 (linux-wasm user programs)"
    bash "$LW_ROOT/tools/build-guest.sh" --target wasm32
    for t in lwtcp lwpkg lwsync; do
        cp "$LW_ROOT/guest/target/wasm32-linux/wasm32-unknown-unknown/release/$t.wasm" "$gbin/$t" ||
            lw_die "wasm: $t.wasm was not built"
    done
fi
chmod 755 "$gbin"/*
overlay=$LW_BUILD/wasm-$VARIANT-overlay.cpio.gz
bash "$LW_ROOT/tools/initramfs.sh" --overlay "$overlay" "$gbin"

# 6. site/, assembled aside and swapped in; a deployed lwnet.json is kept.
lw_info "wasm: building the browser glue (host/web)"
webout=$(bash "$LW_ROOT/host/web/build.sh" build)
new=$(mktemp -d "$(dirname "$SITE")/.site.XXXXXX")
trap 'rm -rf "$new"' EXIT
cp -r "$UP_TREE"/runtime/. "$new/"
rm -f "$new/server.py" # upstream's development server; ./linux-wasm.sh serve replaces it
cp -r "$LW_ROOT"/host/web/site/. "$new/"
mkdir -p "$new/lwnet/js" "$new/lwnet/wasm"
cp "$LW_ROOT"/host/web/js/*.js "$new/lwnet/js/"
cp "$webout/lwhost_web.wasm" "$new/lwnet/wasm/"
cp "$vmlinux" "$new/vmlinux-$VARIANT.wasm"
cat "$UP_INSTALL/initramfs-$VARIANT/initramfs.cpio.gz" "$overlay" >"$new/initramfs-$VARIANT.cpio.gz"
[ ! -f "$SITE/lwnet.json" ] || cp "$SITE/lwnet.json" "$new/lwnet.json"
chmod 755 "$new"
rm -rf "$SITE.old"
[ ! -d "$SITE" ] || mv "$SITE" "$SITE.old"
mv "$new" "$SITE"
rm -rf "$SITE.old"
trap - EXIT
lw_info "wasm: site assembled in $SITE; serve it with ./linux-wasm.sh serve"
