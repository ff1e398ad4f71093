#!/usr/bin/env bash
# Tier e2e: the whole native (um) system, driven the way a user drives it:
# `./linux-wasm.sh run -- COMMAND` boots the real kernel with lwproxy and
# lwhost beside it, against loopback servers this script starts (HTTP, TLS
# with a test CA, a signed package registry). Scenarios (tests/e2e/scenarios/NAME.sh):
#   cli        usage errors, the offline wasm build, serve, a second um build in seconds
#   boot       the guest's devices, run -- passing status and stdin, run --auth
#   http       lwtcp: HTTP/1.0 page and a 16 MiB file, byte for byte
#   usage      lwtcp used as the README shows it, and a C client of the first interface
#   tls        lwtcp --tls through the proxy to a TLS server of a test CA
#   pkg        lwpkg update/install (with a dependency)/list/remove; tampered package and index refused
#   pkgfresh   index rollback after a reboot, conflicts, renames, stalled servers
#   sync       lwsync save, power off, new boot: /home /root /opt back byte for byte;
#              kill -9 of lwhost during a save then restore of the previous snapshot
#   failures   policy denial, proxy stopped mid-transfer, Ctrl-C in a blocking read
#   sync_cases lwsync on the um target: byte names, ctime, sparse, conflicts, locks, damage, hostile manifests
#
#   bash tools/test/e2e.sh [SCENARIO...]   default: every scenario of E2E_SCENARIOS, in order
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"

E2E=$LW_ROOT/tests/e2e
# shellcheck source=tests/e2e/lib.sh
source "$E2E/lib.sh"
e2e_source_scenarios

# Arguments pick scenarios (checked before anything is built); none: all of them.
run_scenarios=("${E2E_SCENARIOS[@]}")
if [ $# -gt 0 ]; then
    case "$1" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
    for s in "$@"; do
        declare -F "scenario_$s" >/dev/null || lw_die "e2e: no scenario '$s' (the tier's: ${E2E_SCENARIOS[*]})"
    done
    run_scenarios=("$@")
fi

lw_need_apt "${LW_APT_BASE[@]}" "${LW_APT_KERNEL[@]}" "${LW_APT_SYSTEM[@]}"
lw_need_rust

# The system is built once for the whole tier.
lw_info "e2e: building the um system (kernel once, then incremental; log: $E2E_TMP/build.log)"
if LW_TARGET=um bash "$LW_ROOT/tools/build-um.sh" 2>&1 | tee "$E2E_TMP/build.log" | grep -E '^(==>|error|warning)' >&2 &&
    [ "${PIPESTATUS[0]}" -eq 0 ]; then
    lw_result pass "e2e: the um system builds (kernel, guest tools, lwhost, lwproxy, initramfs)"
else
    lw_result fail "e2e: the um system builds (kernel, guest tools, lwhost, lwproxy, initramfs)"
    exit 1
fi
e2e_setup

rc=0
for s in "${run_scenarios[@]}"; do
    lw_info "e2e: scenario $s"
    "scenario_$s" || rc=1
done
exit "$rc"
