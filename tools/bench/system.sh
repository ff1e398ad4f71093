#!/usr/bin/env bash
# ./linux-wasm.sh bench system: the whole native system, in one run, beside
# its ceilings. Figures:
#   - lwtcp downloading 64 MiB from loopback (driver -> lwhost -> lwproxy)
#     vs two ceilings measured in the same run: curl on the host fetching the
#     same file directly (context: a user-mode Linux guest pays for every
#     system call, so curl is not reachable), and the guest's own ceiling:
#     ONE guest process (tools/bench/pipe-ceiling.c) moving the same 64 MiB
#     from a tmpfs file to /dev/null with lwtcp's buffer size and lwtcp's
#     loop (read, write), no network, timed as lwtcp is; goal >= 60% of it.
#     Beside it, the same process with the bytes also crossing a pipe
#     (--pipe), as context
#   - lwpkg install of a 5 MiB package
#   - lwsync save of 1,000 files / 50 MiB (goal <= 1.0 s), then an
#     incremental save after one file changed: time and bytes sent; goal
#     < 2x the changed file
#   - boot to shell
# The machine's load is printed at the start and the end: ratios hold only
# when both sides are measured in one run, absolute figures only when quiet.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"
E2E=$LW_ROOT/tests/e2e
# shellcheck source=tests/e2e/lib.sh
source "$E2E/lib.sh"

case "${1:-}" in -h | --help)
    echo "Usage: ./linux-wasm.sh bench system   (builds the um system if needed; prints one table)"
    exit 0 ;;
esac

lw_need_apt "${LW_APT_BASE[@]}" "${LW_APT_KERNEL[@]}" "${LW_APT_SYSTEM[@]}"
lw_need_rust
LW_TARGET=um bash "$LW_ROOT/tools/build-um.sh" >"$E2E_TMP/build.log" 2>&1 ||
    { tail -n 30 "$E2E_TMP/build.log" >&2; lw_die "bench: the um build failed"; }
e2e_setup
head -c 67108864 /dev/urandom >"$WWW/blob64"
gcc -static -O2 -Wall -Wextra -Werror -o "$SHARE/pipe-ceiling" "$LW_ROOT/tools/bench/pipe-ceiling.c"

rows=()
# row FIGURE LWNET CEILING RATIO GOAL
row() { rows+=("$(printf '| %s | %s | %s | %s | %s |' "$@")"); }
mibs() { awk -v a="$1" 'BEGIN { printf "%.1f MiB/s", a / 1048576 }'; }
# goal VALUE OP LIMIT UNIT: "≥ 60%: met" or "...: **missed**" (OP: >= or <=).
goal() {
    awk -v v="$1" -v op="$2" -v l="$3" -v u="$4" 'BEGIN {
        ok = (op == ">=") ? (v >= l) : (v <= l)
        printf "%s %s%s: %s", (op == ">=") ? "≥" : "≤", l, u, ok ? "met" : "**missed**" }'
}
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_start=$(lw_cpu_ticks)

# --- 64 MiB download beside its two ceilings --------------------------------------
# curl first: the host's ceiling, same server, same file, no guest in the path.
curl_bps=$(curl -sS -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$HTTP_PORT/blob64")
# In the guest, lwtcp and the guest's own ceilings alternate, three rounds.
# The ceiling is one process (pipe-ceiling) running lwtcp's loop per 64 KiB
# chunk (lwtcp's buffer, guest/lwtcp/src/main.rs) with the network taken
# out: read the tmpfs file, write stdout, /dev/null as for lwtcp; timed the
# same way. `--pipe` also moves each chunk through a pipe (four system calls
# a chunk, not an upper bound: a um guest pays a ptrace round trip for each).
# Two processes (`dd | dd`) would add a context switch per chunk as well.
guest_script dl 300 --mem 512M <<'EOF' || true
# Timed runs write to /dev/null (as curl does); one untimed run checks the
# size and leaves the bytes in tmpfs for the ceiling. Times come from
# CLOCK_MONOTONIC (pipe-ceiling --now): /proc/uptime moves in 10 ms steps.
printf 'GET /blob64 HTTP/1.0\r\n\r\n' | lwtcp 127.0.0.1 "$HTTP_PORT" >/tmp/blob64
echo "check bytes=$(wc -c </tmp/blob64)"
now() { /mnt/host/pipe-ceiling --now; }
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.6f", e - s }'; }
for i in 1 2 3 4 5; do
    start=$(now)
    printf 'GET /blob64 HTTP/1.0\r\n\r\n' | lwtcp 127.0.0.1 "$HTTP_PORT" >/dev/null
    status=$?
    echo "run=$i status=$status seconds=$(elapsed "$start")"
    start=$(now)
    /mnt/host/pipe-ceiling /tmp/blob64 >/dev/null
    status=$?
    echo "ceil=$i status=$status seconds=$(elapsed "$start")"
    start=$(now)
    /mnt/host/pipe-ceiling --pipe /tmp/blob64 >/dev/null
    status=$?
    echo "pipe=$i status=$status seconds=$(elapsed "$start")"
done
EOF
dl_bytes=$(sed -n 's/^check bytes=//p' "$E2E_TMP/dl.out" | tr -d '\r')
# median KEY: the median of the five rounds' rates in B/s (both sides read
# from page cache). The median, not the best: one round of a loaded machine
# must not set either side's figure. Rounds that failed are left out (of an
# even number left, the lower middle one is taken).
median() {
    awk -v k="$1" -v n="$dl_bytes" '$1 ~ "^" k "=" { split($2, s, "="); split($3, t, "=");
        if (s[2] == 0 && t[2] > 0) printf "%.0f\n", n / t[2] }' "$E2E_TMP/dl.out" |
        sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'
}
# seconds KEY: each round's time in seconds, for the line under the table.
seconds() { tr -d '\r' <"$E2E_TMP/dl.out" | sed -n "s/^$1=[0-9]* status=0 seconds=//p" | tr '\n' ' '; }
lwtcp_bps=0 ceil_bps=0 pipe_bps=0
if [ "${dl_bytes:-0}" -gt 67108864 ]; then
    lwtcp_bps=$(median run)
    ceil_bps=$(median ceil)
    pipe_bps=$(median pipe)
fi
if [ "$lwtcp_bps" -gt 0 ] && [ "$ceil_bps" -gt 0 ]; then
    pct_ceil=$(awk -v a="$lwtcp_bps" -v b="$ceil_bps" 'BEGIN { printf "%.0f", 100 * a / b }')
    pct_curl=$(awk -v a="$lwtcp_bps" -v b="$curl_bps" 'BEGIN { printf "%.0f", 100 * a / b }')
    pct_pipe=$(awk -v a="$lwtcp_bps" -v b="$pipe_bps" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "–" }')
    row "64 MiB download (median of 5 rounds): lwtcp (driver → lwhost → lwproxy) vs the guest's ceiling (one process, lwtcp's loop without the network: tmpfs file → /dev/null, 64 KiB chunks)" \
        "$(mibs "$lwtcp_bps")" "$(mibs "$ceil_bps")" "$pct_ceil%" "$(goal "$pct_ceil" ">=" 60 %)"
    row "the same lwtcp figure vs one process moving each chunk through a pipe as well (tmpfs file → pipe → /dev/null; context: four system calls a chunk)" \
        "$(mibs "$lwtcp_bps")" "$(mibs "$pipe_bps")" "$pct_pipe" "–"
    row "the same lwtcp figure vs curl on the host (context: a um guest pays for every system call)" \
        "$(mibs "$lwtcp_bps")" "$(mibs "$curl_bps")" "$pct_curl%" "–"
else
    show dl
    row "64 MiB download: lwtcp vs the guest's ceiling and curl" "failed (see above)" \
        "curl: $(mibs "$curl_bps")" "–" "≥ 60%: **missed**"
fi

# --- boot to shell ---------------------------------------------------------------
# Two views: the guest's uptime when init hands over (kernel boot + init), and
# the wall time of a whole `run -- true` (proxy, lwhost, boot, power off).
rm -rf "$STORE" && mkdir -p "$STORE" # an empty store: nothing to restore at boot
start=$(date +%s%N)
guest boot 60 -- 'cut -d" " -f1 /proc/uptime' || true
wall_ms=$((($(date +%s%N) - start) / 1000000))
uptime_s=$(tr -d '\r' <"$E2E_TMP/boot.out" | tail -n1)
row "boot to shell (guest uptime at the shell)" "${uptime_s:-?} s" "–" "–" "whole \`run -- true\` cycle: $wall_ms ms"

# --- lwpkg install of a 5 MiB package ----------------------------------------------
e2e_registries
mkdir -p "$WWW/repo-bench" "$E2E_TMP/bench-pkg"
{ printf '#!/bin/sh\necho big5 ok\nexit 0\n'; head -c 5242880 /dev/urandom; } >"$E2E_TMP/bench-pkg/big5"
bash "$LW_ROOT/tools/demo-registry.sh" package "$WWW/repo-bench" big5 1.0 "$E2E_TMP/bench-pkg/big5"
"$LW_ROOT/target/release/lwpkg-index" build "$WWW/repo-bench" --sign "$E2E_TMP/keys/test.key" >/dev/null
guest_script pkgbench 300 <<'EOF' || true
. /mnt/host/pkg-env.sh
use_repo repo-bench
lwpkg update >/dev/null; echo "update=$?"
start=$(cut -d' ' -f1 /proc/uptime)
lwpkg install big5 >/dev/null; echo "install=$?"
end=$(cut -d' ' -f1 /proc/uptime)
echo "seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')"
big5
EOF
if grep -q '^install=0' "$E2E_TMP/pkgbench.out" && grep -q 'big5 ok' "$E2E_TMP/pkgbench.out"; then
    secs=$(sed -n 's/^seconds=//p' "$E2E_TMP/pkgbench.out")
    row "\`lwpkg install\` of a 5 MiB package (download, sha256, install)" \
        "$secs s ($(awk -v t="$secs" 'BEGIN { if (t > 0) printf "%.1f MiB/s", 5 / t }'))" "–" "–" "–"
else
    show pkgbench
    row "\`lwpkg install\` of a 5 MiB package" "failed (see above)" "–" "–" "–"
fi

# --- lwsync save: 1,000 files / 50 MiB, then one file changed ------------------------
rm -rf "$STORE" && mkdir -p "$STORE"
guest_script syncbench 600 --mem 512M <<'EOF' || true
elapsed() { awk -v s="$1" -v e="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print e - s }'; }
mkdir -p /home/bench
i=0
while [ $i -lt 1000 ]; do
    [ $((i % 100)) = 0 ] && mkdir -p /home/bench/d$((i / 100))
    head -c 52428 /dev/urandom >/home/bench/d$((i / 100))/f$i
    i=$((i + 1))
done
echo "files=$(find /home/bench -type f | wc -l) bytes=$(du -sk /home/bench | cut -f1)KiB"
start=$(cut -d' ' -f1 /proc/uptime)
lwsync save; echo "save=$?"
echo "full-seconds=$(elapsed "$start")"
head -c 52428 /dev/urandom >/home/bench/d5/f500
start=$(cut -d' ' -f1 /proc/uptime)
lwsync save; echo "save=$?"
echo "incr-seconds=$(elapsed "$start")"
EOF
if [ "$(grep -c '^save=0' "$E2E_TMP/syncbench.out")" = 2 ]; then
    full_s=$(sed -n 's/^full-seconds=//p' "$E2E_TMP/syncbench.out")
    incr_s=$(sed -n 's/^incr-seconds=//p' "$E2E_TMP/syncbench.out")
    full_kib=$(grep -o '[0-9]* KiB sent' "$E2E_TMP/syncbench.out" | sed -n '1s/ KiB sent//p')
    incr_kib=$(grep -o '[0-9]* KiB sent' "$E2E_TMP/syncbench.out" | sed -n '2s/ KiB sent//p')
    row "\`lwsync save\` of 1,000 files / 50 MiB (first save)" \
        "$full_s s ($(awk -v t="$full_s" 'BEGIN { if (t > 0) printf "%.1f MiB/s", 50 / t }')), $full_kib KiB sent" \
        "–" "–" "$(goal "$full_s" "<=" 1.0 " s")"
    row "incremental \`lwsync save\` after one 51 KiB file changed" "$incr_s s, $incr_kib KiB sent" \
        "–" "$(awk -v k="${incr_kib:-0}" 'BEGIN { printf "%.2f× the file", k / 51.2 }')" \
        "< 2× the file (102 KiB): $(awk -v k="${incr_kib:-0}" 'BEGIN { print (k < 102.4) ? "met" : "**missed**" }')"
else
    show syncbench
    row "\`lwsync save\` of 1,000 files / 50 MiB" "failed (see above)" "–" "–" "≤ 1.0 s: **missed**"
fi

echo
echo "lwnet system benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
    "load average (1/5/15 min) $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end," \
    "$(lw_steal_since "$cpu_start")"
echo "| figure | lwnet | ceiling (same run) | ratio | goal |"
echo "|---|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo "download rounds, seconds (median used; alternating): lwtcp $(seconds run)| ceiling $(seconds ceil)| through a pipe $(seconds pipe)"
