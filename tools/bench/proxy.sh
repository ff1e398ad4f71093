#!/usr/bin/env bash
# ./linux-wasm.sh bench proxy — lwproxy (v1 JSON and lwproxy.v2 binary) side by side with
# wasmnet 0.2.0 (JSON and binary) and socat (plain TCP relay, the ceiling), on loopback.
# Prints a Markdown table: throughput, 64-byte echo p50/p99, RSS per idle session.
# Then the Wisp table: one Rust Wisp client against lwproxy's /wisp/, the wisp-js server
# (npm, the lockfile of tests/interop/wisp-js) and wisp-server-python (PyPI, pinned in
# tools/bench/wisp-python.txt); epoxy-server is not in the Rust registry, so it is not run.
# Extra arguments for the bench client can be given in LW_BENCH_PROXY_ARGS
# (e.g. "--bytes 67108864 --runs 1 --sessions 200"); see `--help` of the example.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

lw_need_apt socat python3-venv
command -v cargo >/dev/null || lw_die "cargo not found: install Rust with rustup first"

# The peer proxy, from the Rust registry, into a scratch directory kept between runs.
wasmnet_root="$LW_WORKSPACE/bench/wasmnet-0.2.0"
if [ ! -x "$wasmnet_root/bin/wasmnet-server" ]; then
    lw_info "installing wasmnet 0.2.0 (the peer proxy) into $wasmnet_root"
    mkdir -p "$wasmnet_root"
    cargo install wasmnet --version 0.2.0 --locked --root "$wasmnet_root" >&2 \
        || lw_die "could not install wasmnet 0.2.0 (needs the Rust registry)"
fi

# The Wisp peers: wisp-js's server (the machine's Node.js) and wisp-server-python (a venv).
wisp_args=()
if command -v node >/dev/null && npm ci --prefix "$LW_ROOT/tests/interop/wisp-js" --ignore-scripts \
    --no-audit --no-fund --loglevel=error >&2; then
    wisp_args+=(--node "$(command -v node)"
        --wisp-js "$LW_ROOT/tests/interop/wisp-js/node_modules/@mercuryworkshop/wisp-js/src/bin/server_cli.mjs")
else
    lw_warn "Node.js/npm missing or npm ci failed: the wisp-js server is left out of the Wisp table"
fi
wisp_py="$LW_WORKSPACE/bench/wisp-python"
if [ ! -x "$wisp_py/bin/python" ]; then
    lw_info "installing wisp-server-python 0.9.0 into $wisp_py"
    if ! { python3 -m venv "$wisp_py" &&
        "$wisp_py/bin/pip" install -q --no-deps -r "$LW_ROOT/tools/bench/wisp-python.txt" >&2; }; then
        rm -rf "$wisp_py"
    fi
fi
if [ -x "$wisp_py/bin/python" ]; then
    wisp_args+=(--wisp-python "$wisp_py/bin/python")
else
    lw_warn "could not install wisp-server-python into $wisp_py (needs python3-venv and the Python package registry for the pins in tools/bench/wisp-python.txt; pip's message is above): it is left out of the Wisp table"
fi

lw_info "building lwproxy and the bench client (release)"
cargo build --release -q -p lwproxy --bin lwproxy --example lwproxy_bench --manifest-path "$LW_ROOT/Cargo.toml"

# 1,000 sessions, each with a connection, need a few thousand descriptors per process.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

cpu_start=$(lw_cpu_ticks)
# shellcheck disable=SC2086 # word splitting of the optional extra arguments is intended
"$LW_ROOT/target/release/examples/lwproxy_bench" \
    --lwproxy "$LW_ROOT/target/release/lwproxy" \
    --wasmnet "$wasmnet_root/bin/wasmnet-server" \
    --socat "$(command -v socat)" \
    "${wisp_args[@]}" \
    ${LW_BENCH_PROXY_ARGS:-}
echo "during this benchmark: $(lw_steal_since "$cpu_start")"
