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

# choose DIR WHAT KIND LIST NAME...: sets CHOSEN to the NAMEs, or to every
# name of the array LIST when none is given, after checking that each has
# its script tools/DIR/NAME.sh; else exits 2 with "unknown WHAT" and the KIND.
choose() {
    local dir=$1 what=$2 kind=$3 n
    local -n names=$4
    shift 4
    CHOSEN=("$@")
    [ ${#CHOSEN[@]} -gt 0 ] || CHOSEN=("${names[@]}")
    for n in "${CHOSEN[@]}"; do
        [ -f "$LW_ROOT/tools/$dir/$n.sh" ] || { echo "error: unknown $what '$n' ($kind: ${names[*]})" >&2; exit 2; }
    done
}

cmd_test() {
    case "${1:-}" in -h | --help)
        echo "Usage: ./linux-wasm.sh test [TIER...]"
        echo "Tiers: ${TIERS[*]}. Installs what it needs, runs each tier and prints 'N passed, N failed'."
        return 0 ;;
    esac
    choose test "test tier" tiers TIERS "$@"
    local tiers=("${CHOSEN[@]}") t
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
    choose bench benchmark parts BENCHES "$@"
    local p
    for p in "${CHOSEN[@]}"; do bash "$LW_ROOT/tools/bench/$p.sh"; done
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
