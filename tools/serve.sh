#!/usr/bin/env bash
# ./linux-wasm.sh serve: serves the wasm build's site/ on loopback with the
# headers SharedArrayBuffer needs (COOP/COEP), and lwproxy beside it.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: ./linux-wasm.sh serve [--port N] [--proxy-port N] [--site DIR] [--auth]

Serves site/ (from LW_TARGET=wasm ./linux-wasm.sh build) at http://127.0.0.1:PORT/
with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy:
require-corp, and starts lwproxy on ws://127.0.0.1:PROXY-PORT/ with safe defaults
(public addresses only, ports 80 and 443). Without --auth the proxy accepts any
client, which is acceptable on loopback only; with --auth it requires a token
(JWT_SECRET must be set; mint one with: target/release/lwproxy token --sub NAME).
Stop with Ctrl-C; both servers stop together.
  --port N         web port (default 8000)
  --proxy-port N   proxy port (default 8080)
  --site DIR       directory to serve (default: site/)
USAGE
}

port=8000 proxy_port=8080 site=$LW_ROOT/site auth=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --port | --proxy-port | --site)
            [ $# -ge 2 ] || { echo "error: $1 needs a value" >&2; exit 2; }
            case "$1" in
                --port) port=$2 ;;
                --proxy-port) proxy_port=$2 ;;
                --site) site=$2 ;;
            esac
            shift 2 ;;
        --auth) auth=1; shift ;;
        *) echo "error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
for p in "$port" "$proxy_port"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then
        echo "error: bad port '$p'" >&2
        exit 2
    fi
done
[ -f "$site/index.html" ] || lw_die "serve: $site/index.html is missing; build the wasm target first (./linux-wasm.sh build)"
if [ "$auth" = 1 ] && [ -z "${JWT_SECRET:-}" ]; then
    echo "error: --auth needs JWT_SECRET (the proxy's HS256 secret) in the environment" >&2
    exit 2
fi

lw_info "building lwproxy"
lw_build_host

pids=()
# shellcheck disable=SC2317 # reached through the traps below
cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

proxy_args=(--listen "127.0.0.1:$proxy_port" --log-format text)
if [ "$auth" = 0 ]; then
    proxy_args+=(--no-auth)
    lw_warn "lwproxy runs WITHOUT AUTH on 127.0.0.1:$proxy_port; fine on loopback, never on a public address (README: deploying lwproxy)"
fi
"$LW_ROOT/target/release/lwproxy" "${proxy_args[@]}" &
pids+=($!)

# The kernel's memory and the host shim's region are SharedArrayBuffers: the
# page must be cross-origin isolated (COOP/COEP), which servers.py site sends.
python3 -u "$LW_ROOT/tools/servers.py" site --route "/=$site" --port "$port" --lifetime 0 &
pids+=($!)
# The page takes its proxy from site/lwnet.json, else ws://<its host>:8080/;
# ?proxy= overrides both.
url="http://127.0.0.1:$port/"
[ "$proxy_port" = 8080 ] || url="$url?proxy=ws://127.0.0.1:$proxy_port/"
lw_info "open $url ; the proxy is ws://127.0.0.1:$proxy_port/ (unless site/lwnet.json names another) ; Ctrl-C stops both"
wait -n "${pids[@]}" || true
