#!/usr/bin/env bash
# The demo content `./linux-wasm.sh run` serves on loopback: a web page and a
# signed package registry, built with lwpkg-index and signed with a key kept
# in the workspace: for x86_64 hello (tools/demo/hello.c) and hello-fancy
# which depends on it; for wasm32 hello (guest/hello), a linux-wasm user
# program built like the wasm32 tools (tools/build-guest.sh). The key's
# public half goes into the initramfs as /etc/lwpkg/keys/demo.pub.
#
#   tools/demo-registry.sh build          -> $LW_INSTALL/um/demo/{index.html,registry/}
#   tools/demo-registry.sh package DIR NAME VERSION FILE [DEPENDS...]
#                                         add one package build to a registry directory
#                                         (LW_PKG_ARCH=wasm32 for a wasm32 build; x86_64 default)
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

DEMO_SRC=$LW_ROOT/tools/demo
DEMO_OUT=$LW_INSTALL/um/demo
KEYS=$LW_WORKSPACE/keys
INDEXER=$LW_ROOT/target/release/lwpkg-index
WASM_BIN=$LW_ROOT/guest/target/wasm32-linux/wasm32-unknown-unknown/release

# package DIR NAME VERSION FILE [DEPENDS...]: copies FILE into DIR/NAME-VERSION
# and writes its metadata for lwpkg-index.
package() {
    local dir=$1 name=$2 version=$3 file=$4
    shift 4
    local deps='' d
    for d in "$@"; do deps+="${deps:+,}\"$d\""; done
    local arch=${LW_PKG_ARCH:-x86_64} base=$name-$version
    [ "$arch" = x86_64 ] || base=$name-$version-$arch
    install -m 0755 "$file" "$dir/$base"
    printf '{"name":"%s","version":"%s","arch":"%s","file":"%s","description":"%s","depends":[%s]}\n' \
        "$name" "$version" "$arch" "$base" "${LW_PKG_DESCRIPTION:-$name demo package}" "$deps" >"$dir/$base.pkg.json"
}

build() {
    [ -x "$INDEXER" ] || lw_die "demo: $INDEXER is missing; build it first (LW_TARGET=um ./linux-wasm.sh build host)"
    mkdir -p "$KEYS"
    if [ ! -f "$KEYS/demo.key" ]; then
        "$INDEXER" keygen --out "$KEYS/demo" >/dev/null
        lw_info "demo: new registry signing key $KEYS/demo.key"
    fi
    # The wasm32 packages are built exactly as the wasm32 tools are.
    bash "$LW_ROOT/tools/build-guest.sh" --target wasm32 >&2
    local want
    want=$({ sha256sum "$DEMO_SRC"/* "$KEYS/demo.pub" "$INDEXER" "$WASM_BIN/hello.wasm"; gcc --version | head -n1; } \
        | sha256sum | cut -d' ' -f1)
    if [ -f "$DEMO_OUT/.stamp" ] && [ "$(cat "$DEMO_OUT/.stamp")" = "$want" ]; then
        lw_info "demo: up to date ($DEMO_OUT)"
        return 0
    fi
    local tmp=$DEMO_OUT.new
    rm -rf "$tmp"
    mkdir -p "$tmp/registry"
    cp "$DEMO_SRC/index.html" "$tmp/index.html"
    gcc -static -Os -s -Wall -Werror -o "$tmp/hello.bin" "$DEMO_SRC/hello.c"
    LW_PKG_DESCRIPTION="prints a greeting (static x86_64)" package "$tmp/registry" hello 1.0 "$tmp/hello.bin"
    LW_PKG_DESCRIPTION="the greeting, framed (needs hello)" package "$tmp/registry" hello-fancy 1.0 "$DEMO_SRC/hello-fancy" hello
    LW_PKG_ARCH=wasm32 LW_PKG_DESCRIPTION="prints a greeting (wasm32 linux-wasm program)" \
        package "$tmp/registry" hello 1.0 "$WASM_BIN/hello.wasm"
    rm -f "$tmp/hello.bin"
    # Rebuilt only when its inputs change: a long expiry keeps an old build usable.
    "$INDEXER" build "$tmp/registry" --sign "$KEYS/demo.key" --expires 3650d >/dev/null
    "$INDEXER" verify --pub "$KEYS/demo.pub" "$tmp/registry/index.json" >/dev/null
    cp "$KEYS/demo.pub" "$tmp/demo.pub"
    printf '%s\n' "$want" >"$tmp/.stamp"
    rm -rf "$DEMO_OUT"
    mv "$tmp" "$DEMO_OUT"
    lw_info "demo: page and signed registry in $DEMO_OUT"
}

case "${1:-}" in
    build) build ;;
    package) shift; [ $# -ge 4 ] || { echo "usage: tools/demo-registry.sh package DIR NAME VERSION FILE [DEPENDS...]" >&2; exit 2; }
        package "$@" ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) echo "usage: tools/demo-registry.sh build | package DIR NAME VERSION FILE [DEPENDS...]" >&2; exit 2 ;;
esac
