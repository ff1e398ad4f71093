# shellcheck shell=bash
# For tests that build the wasm target against the fake upstream of this
# folder. Source after tools/lib.sh; do not run it.
#
#   lw_fake_upstream DIR       DIR/upstream: a copy of the fake (builds write
#                              into it); DIR/guest-bin: stand-in guest tools
#   lw_fake_build DIR LOG [VAR=VALUE...]
#                              one `./linux-wasm.sh build` with LW_UPSTREAM=
#                              DIR/upstream, workspace DIR/ws, site DIR/site;
#                              output in LOG; VAR=VALUE are added to its env

LW_FAKE_KVER=6.12

# The pristine kernel files the wasm series modifies (not creates): the fake
# kernel tree starts from them, so the series applies as it does to a kernel.
_lw_fake_seed_files() {
    local p
    bash "$LW_ROOT/tools/kernel-series.sh" list wasm | while IFS= read -r p; do cat "$p"; done | awk '/^--- \/dev\/null/ { created = 1; next }
        /^--- a\// { created = 0; print substr($2, 3); next }
        /^\+\+\+ b\// && created { print "new " substr($2, 3); created = 0 }' |
        awk '$1 == "new" { made[$2] = 1; next } !($1 in made) && !seen[$1]++ { print }'
}

# Sets LW_FAKE_SEED to a directory of those files, made once: from the kernel
# tier's pristine tree if there is one, else from Debian's source tarball.
_lw_fake_seed() {
    local v=$LW_FAKE_KVER f files
    LW_FAKE_SEED=$LW_BUILD/fake-kernel-seed-$v-$(_lw_fake_seed_files | sha256sum | cut -c1-16)
    [ ! -d "$LW_FAKE_SEED" ] || return 0
    rm -rf "$LW_FAKE_SEED.tmp"
    mkdir -p "$LW_FAKE_SEED.tmp"
    if git -C "$LW_BUILD/linux-$v" rev-parse -q --verify lw-pristine >/dev/null 2>&1; then
        while IFS= read -r f; do
            mkdir -p "$LW_FAKE_SEED.tmp/$(dirname "$f")"
            git -C "$LW_BUILD/linux-$v" show "lw-pristine:$f" >"$LW_FAKE_SEED.tmp/$f" || return 1
        done < <(_lw_fake_seed_files)
    else
        local tarball=/usr/src/linux-source-$v.tar.xz
        [ -f "$tarball" ] || lw_need_apt "linux-source-$v"
        mapfile -t files < <(_lw_fake_seed_files)
        lw_info "fake upstream: extracting ${files[*]} from $tarball"
        tar -xJf "$tarball" -C "$LW_FAKE_SEED.tmp" --strip-components=1 --occurrence=1 \
            "${files[@]/#/linux-source-$v/}" || return 1
    fi
    mv "$LW_FAKE_SEED.tmp" "$LW_FAKE_SEED"
}

lw_fake_upstream() {
    local dir=$1 t
    _lw_fake_seed || { lw_warn "could not gather the fake kernel's seed files"; return 1; }
    cp -a "$LW_ROOT/tests/fake-upstream" "$dir/upstream"
    mkdir -p "$dir/guest-bin"
    for t in lwtcp lwpkg lwsync; do printf '\0asm\1\0\0\0' >"$dir/guest-bin/$t"; done
}

lw_fake_build() {
    local dir=$1 log=$2 ws=$1/ws
    shift 2
    env LW_TARGET=wasm LW_WORKSPACE="$ws" LW_SRC="$ws/src" LW_BUILD="$ws/build" LW_INSTALL="$ws/install" \
        LW_SITE="$dir/site" LW_UPSTREAM="$dir/upstream" LW_GUEST_BIN="$dir/guest-bin" \
        FAKE_KERNEL_SEED="$LW_FAKE_SEED" "$@" "$LW_ROOT/linux-wasm.sh" build >"$log" 2>&1
}
