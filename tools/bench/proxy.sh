#!/usr/bin/env bash
# ./linux-wasm.sh bench proxy — lwproxy (seed JSON and lwproxy.v2 binary) side by side with
# wasmnet 0.2.0 (JSON and binary) and socat (plain TCP relay, the ceiling), on loopback.
# Prints a Markdown table: throughput, 64-byte echo p50/p99, RSS per idle session.
# Extra arguments for the bench client can be given in LW_BENCH_PROXY_ARGS
# (e.g. "--bytes 67108864 --runs 1 --sessions 200"); see `--help` of the example.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

lw_need_apt socat
command -v cargo >/dev/null || lw_die "cargo not found: install Rust with rustup first"

# The peer proxy, from the Rust registry, into a scratch directory kept between runs.
wasmnet_root="$LW_WORKSPACE/bench/wasmnet-0.2.0"
if [ ! -x "$wasmnet_root/bin/wasmnet-server" ]; then
    lw_info "installing wasmnet 0.2.0 (the peer proxy) into $wasmnet_root"
    mkdir -p "$wasmnet_root"
    cargo install wasmnet --version 0.2.0 --locked --root "$wasmnet_root" >&2 \
        || lw_die "could not install wasmnet 0.2.0 (needs the Rust registry)"
fi

lw_info "building lwproxy and the bench client (release)"
cargo build --release -q -p lwproxy --bin lwproxy --example lwproxy_bench --manifest-path "$LW_ROOT/Cargo.toml"

# 1,000 sessions, each with a connection, need a few thousand descriptors per process.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# shellcheck disable=SC2086 # word splitting of the optional extra arguments is intended
"$LW_ROOT/target/release/examples/lwproxy_bench" \
    --lwproxy "$LW_ROOT/target/release/lwproxy" \
    --wasmnet "$wasmnet_root/bin/wasmnet-server" \
    --socat "$(command -v socat)" \
    ${LW_BENCH_PROXY_ARGS:-}
