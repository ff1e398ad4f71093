# shellcheck shell=bash
# Kernel source trees with the lwnet patch series applied. Source it after
# tools/lib.sh; do not run it.
#
#   lw_kernel_tree VERSION DEST
#
# VERSION is 6.12 or 6.1 (Debian's linux-source-VERSION). DEST becomes a git
# tree: one commit "pristine" (tag lw-pristine) with the unmodified sources,
# then patches/kernel/*.patch applied with `git am` in order. A stamp with the
# sha256 of the series makes a re-run a no-op; when the series changed, the
# tree is reset to lw-pristine and the series re-applied. Build outputs that
# .gitignore covers survive a reset, so an in-tree build stays incremental;
# building with O=DIR outside DEST is better still.

LW_KERNEL_PATCHES=${LW_KERNEL_PATCHES:-$LW_ROOT/patches/kernel}

# The sha256 of the series: every patch name and its bytes, in order.
lw_kernel_series_sha() {
    local p
    {
        for p in "$LW_KERNEL_PATCHES"/*.patch; do
            [ -e "$p" ] || continue
            printf '%s\n' "${p##*/}"
            cat "$p"
        done
    } | sha256sum | cut -d' ' -f1
}

# git in DEST with a fixed identity, so a fresh machine needs no git config.
lw_kernel_git() {
    local dest=$1
    shift
    git -C "$dest" -c user.name="lwnet build" -c user.email="build@lwnet.invalid" \
        -c core.autocrlf=false -c gc.auto=0 "$@"
}

# lw_kernel_pristine VERSION DEST: makes DEST a git tree whose tag lw-pristine
# is the unmodified linux-source-VERSION (extracting it if DEST is new). What
# is checked out is left alone. Prints nothing on stdout.
lw_kernel_pristine() {
    local version=${1:?usage: lw_kernel_pristine VERSION DEST} dest=${2:?usage: lw_kernel_pristine VERSION DEST}
    _lw_kernel_locked "$version" "$dest" _lw_kernel_extract
}

lw_kernel_tree() {
    local version=${1:?usage: lw_kernel_tree VERSION DEST} dest=${2:?usage: lw_kernel_tree VERSION DEST}
    _lw_kernel_locked "$version" "$dest" _lw_kernel_tree_locked
}

# _lw_kernel_locked VERSION DEST FUNC: FUNC VERSION DEST TARBALL, one caller at
# a time per tree (the lock file sits beside the tree).
_lw_kernel_locked() {
    local version=$1 dest=$2 func=$3
    case "$version" in
        6.12 | 6.1) ;;
        *) lw_die "lw_kernel_tree: unsupported kernel version '$version' (6.12 or 6.1)" ;;
    esac
    local tarball=/usr/src/linux-source-$version.tar.xz
    if [ ! -f "$tarball" ]; then
        lw_need_apt "linux-source-$version"
        [ -f "$tarball" ] || lw_die "lw_kernel_tree: $tarball missing after installing linux-source-$version"
    fi
    mkdir -p "$(dirname "$dest")"
    dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")
    local lockfd
    exec {lockfd}>"$dest.lock"
    flock "$lockfd"
    "$func" "$version" "$dest" "$tarball"
    exec {lockfd}>&-
}

# _lw_kernel_extract VERSION DEST TARBALL: DEST has the tag lw-pristine.
_lw_kernel_extract() {
    local version=$1 dest=$2 tarball=$3
    if [ -d "$dest/.git" ] && lw_kernel_git "$dest" rev-parse -q --verify lw-pristine >/dev/null; then
        return 0
    fi
    [ ! -e "$dest" ] || [ -z "$(ls -A "$dest")" ] ||
        lw_die "lw_kernel_tree: $dest exists but is not an lwnet kernel tree; remove it first"
    lw_info "kernel $version: extracting $tarball into $dest"
    mkdir -p "$dest"
    tar -xJf "$tarball" -C "$dest" --strip-components=1 ||
        lw_die "lw_kernel_tree: could not extract $tarball"
    { git init -q "$dest" && lw_kernel_git "$dest" add -A -f . &&
        lw_kernel_git "$dest" commit -q --no-verify -m "pristine linux-source-$version" &&
        lw_kernel_git "$dest" tag lw-pristine; } || lw_die "lw_kernel_tree: could not make $dest a git tree"
}

_lw_kernel_tree_locked() {
    local version=$1 dest=$2 tarball=$3
    local want stamp="$dest/.git/lw-series"
    want=$(lw_kernel_series_sha)

    if [ -d "$dest/.git" ] && lw_kernel_git "$dest" rev-parse -q --verify lw-pristine >/dev/null; then
        if [ -f "$stamp" ]; then
            local have_sha have_head
            read -r have_sha have_head <"$stamp" || true
            if [ "$have_sha" = "$want" ] && [ "$(lw_kernel_git "$dest" rev-parse HEAD)" = "$have_head" ] &&
                lw_kernel_git "$dest" diff --quiet HEAD --; then
                lw_info "kernel $version: $dest is up to date with the patch series"
                return 0
            fi
        fi
        lw_info "kernel $version: patch series changed, re-applying in $dest"
        lw_kernel_git "$dest" am --abort >/dev/null 2>&1 || true
        lw_kernel_git "$dest" checkout -q -f --detach lw-pristine
        lw_kernel_git "$dest" clean -fdq # untracked, not ignored: build outputs stay
    else
        _lw_kernel_extract "$version" "$dest" "$tarball"
    fi

    rm -f "$stamp"
    local patches=("$LW_KERNEL_PATCHES"/*.patch)
    if [ -e "${patches[0]}" ]; then
        lw_info "kernel $version: applying ${#patches[@]} patches"
        if ! lw_kernel_git "$dest" am -q --no-gpg-sign "${patches[@]}" >&2; then
            lw_kernel_git "$dest" am --abort >/dev/null 2>&1 || true
            lw_die "lw_kernel_tree: the patch series does not apply to linux-source-$version"
        fi
    fi
    printf '%s %s\n' "$want" "$(lw_kernel_git "$dest" rev-parse HEAD)" >"$stamp"
}
