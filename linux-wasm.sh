#!/usr/bin/env bash
# lwnet: networking, storage and packages for Linux on WebAssembly.
# The one entry point: build, run, serve, test and benchmark the system.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/tools/lib.sh"

TIERS=(unit wasm kernel e2e browser interop)
BENCHES=(proxy host system)

usage() {
    cat <<USAGE
Usage: ./linux-wasm.sh COMMAND [ARGS]

Commands:
  build [--help]           build the system for LW_TARGET (wasm by default, or um)
  run [--help] [--share DIR] [--allow CIDR[:PORT]]... [-- CMD]
                           boot the native (um) system with lwproxy, lwhost and a demo
                           registry beside it: a shell, or CMD's output and exit status
  serve [--help]           serve the wasm build's site/ with COOP/COEP, and lwproxy
  proxy [LWPROXY-ARGS]     start lwproxy alone (safe defaults: public addresses, ports 80/443)
  kernel-series [--help] export|check|list TARGET
                           regenerate patches/kernel/ from the driver sources in kernel/,
                           check it is current, or list one target's patches
  test [TIER...]           run test tiers: ${TIERS[*]} (default: all)
  bench [PART...]          run benchmarks: ${BENCHES[*]} (default: all)
  setup                    install what the build and tests need (apt packages, Rust targets)
  help                     this text

Environment:
  LW_TARGET     wasm (default) or um
  LW_WORKSPACE  where sources, builds and the guest's store live (default: ./workspace)
USAGE
}

cmd_test() {
    case "${1:-}" in -h | --help)
        echo "Usage: ./linux-wasm.sh test [TIER...]"
        echo "Tiers: ${TIERS[*]}. Installs what it needs, runs each tier and prints 'N passed, N failed'."
        return 0 ;;
    esac
    local tiers=("$@") t
    [ ${#tiers[@]} -gt 0 ] || tiers=("${TIERS[@]}")
    for t in "${tiers[@]}"; do
        [ -f "$LW_ROOT/tools/test/$t.sh" ] || { echo "error: unknown test tier '$t' (tiers: ${TIERS[*]})" >&2; exit 2; }
    done
    mkdir -p "$LW_WORKSPACE"
    LW_RESULTS=$(mktemp "$LW_WORKSPACE/results.XXXXXX")
    export LW_RESULTS
    local start=$SECONDS broken=()
    for t in "${tiers[@]}"; do
        lw_info "test tier: $t"
        local tstart=$SECONDS
        bash "$LW_ROOT/tools/test/$t.sh" || broken+=("$t")
        lw_info "tier $t took $((SECONDS - tstart)) s"
    done
    local passed failed
    passed=$(grep -c '^pass ' "$LW_RESULTS" || true)
    failed=$(grep -c '^fail ' "$LW_RESULTS" || true)
    if [ ${#broken[@]} -gt 0 ] && [ "$failed" -eq 0 ]; then
        failed=${#broken[@]} # a tier that died without recording a failure still fails
    fi
    echo
    grep '^fail ' "$LW_RESULTS" | sed 's/^fail /failed: /' || true
    [ ${#broken[@]} -eq 0 ] || echo "tiers with failures: ${broken[*]}"
    echo "total time: $((SECONDS - start)) s"
    echo "$passed passed, $failed failed"
    rm -f "$LW_RESULTS"
    [ "$failed" -eq 0 ] && [ ${#broken[@]} -eq 0 ]
}

cmd_bench() {
    case "${1:-}" in -h | --help)
        echo "Usage: ./linux-wasm.sh bench [PART...]   parts: ${BENCHES[*]}"
        echo "Prints each part's figures beside its baseline in one run."
        return 0 ;;
    esac
    local parts=("$@") p
    [ ${#parts[@]} -gt 0 ] || parts=("${BENCHES[@]}")
    for p in "${parts[@]}"; do
        [ -f "$LW_ROOT/tools/bench/$p.sh" ] || { echo "error: unknown benchmark '$p' (parts: ${BENCHES[*]})" >&2; exit 2; }
    done
    for p in "${parts[@]}"; do bash "$LW_ROOT/tools/bench/$p.sh"; done
}

cmd_proxy() {
    lw_need_apt "${LW_APT_BASE[@]}"
    lw_info "building lwproxy"
    lw_build_host
    exec "$LW_ROOT/target/release/lwproxy" "$@"
}

main() {
    local cmd=${1:-help}
    [ $# -gt 0 ] && shift
    case "$cmd" in
    help | -h | --help) usage ;;
    setup)
        lw_need_apt "${LW_APT_BASE[@]}" "${LW_APT_KERNEL[@]}" "${LW_APT_SYSTEM[@]}" "${LW_APT_BROWSER[@]}"
        lw_need_rust ;;
    test) cmd_test "$@" ;;
    bench) cmd_bench "$@" ;;
    proxy) cmd_proxy "$@" ;;
    kernel-series) exec bash "$LW_ROOT/tools/kernel-series.sh" "$@" ;;
    build | run | serve) exec bash "$LW_ROOT/tools/$cmd.sh" "$@" ;;
    *)
        echo "error: unknown command '$cmd'" >&2
        usage >&2
        exit 2 ;;
    esac
}

main "$@"
