#!/usr/bin/env bash
# Builds the browser half of lwhost: host/web's wasm32 modules (the shim and
# the fake kernel of tests/fake-kernel) with shared memory, into $LW_BUILD/web/wasm/.
# Prints the output directory on stdout.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../../tools/lib.sh"

out=$LW_BUILD/web/wasm
target_dir=$LW_ROOT/target/web
web=$LW_ROOT/host/web

# Shared memory needs every object, std included, built with atomics and
# bulk-memory: std is rebuilt from rust-src (-Zbuild-std, allowed on a stable
# compiler by RUSTC_BOOTSTRAP). The memory is imported (one per thread
# group, made by the embedder) and the thread-setup symbols are exported so
# the embedder can give each instance its own stack and TLS block.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$target_dir
export RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals \
 -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=268435456 \
 -C link-arg=--export=__stack_pointer -C link-arg=--export=__wasm_init_tls \
 -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base \
 -C link-arg=-zstack-size=65536"
build_args=(--manifest-path "$web/Cargo.toml" --release --target wasm32-unknown-unknown
    -Zbuild-std=std,panic_abort)

case "${1:-build}" in
build)
    lw_info "building host/web (wasm32, shared memory)"
    nice cargo build "${build_args[@]}" >&2
    mkdir -p "$out"
    for m in lwhost_web lwnet_fake_kernel; do
        cp "$target_dir/wasm32-unknown-unknown/release/$m.wasm" "$out/$m.wasm"
    done
    echo "$out"
    ;;
clippy)
    nice cargo clippy "${build_args[@]}" -- -D warnings
    ;;
fmt-check)
    cargo fmt --manifest-path "$web/Cargo.toml" --all -- --check
    ;;
*) lw_die "usage: host/web/build.sh [build|clippy|fmt-check]" ;;
esac
