# shellcheck shell=bash
# Helpers of the e2e tier (tools/test/e2e.sh) and the system benchmark
# (tools/bench/system.sh): loopback servers, guest runs, checks. Source after
# tools/lib.sh. The scenarios are tests/e2e/scenarios/NAME.sh, one each.

E2E=${E2E:-$LW_ROOT/tests/e2e}
# Scenarios run by the tier, in order.
# shellcheck disable=SC2034 # read by tools/test/e2e.sh
E2E_SCENARIOS=(cli boot http usage tls pkg pkgfresh sync failures sync_cases)
# tools/test/e2e.sh NAME... runs only the named ones.

# e2e_source_scenarios: defines scenario_NAME for every file in scenarios/.
e2e_source_scenarios() {
    local f
    for f in "$E2E"/scenarios/*.sh; do
        # shellcheck source=/dev/null # each file is checked on its own
        source "$f"
    done
}

mkdir -p "$LW_WORKSPACE"
E2E_TMP=$(mktemp -d "$LW_WORKSPACE/e2e.XXXXXX")
SHARE=$E2E_TMP/share       # the guest's /mnt/host
OUT=$SHARE/out             # what guest scripts hand back
WWW=$E2E_TMP/www           # the loopback web server's files
STATE=$E2E_TMP/state       # marker files of the servers
STORE=$E2E_TMP/store       # the guest's store for this tier
E2E_PIDS=()

# shellcheck disable=SC2317 # reached through the trap
e2e_cleanup() {
    local p
    for p in "${E2E_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ "${LW_KEEP_E2E:-0}" = 1 ]; then
        echo "e2e: kept $E2E_TMP" >&2
    else
        rm -rf "$E2E_TMP"
    fi
}
trap e2e_cleanup EXIT

# e2e_setup: test files, the CA, the C lwtcp client and the loopback servers.
e2e_setup() {
    mkdir -p "$SHARE" "$OUT" "$WWW" "$STATE" "$STORE"
    printf '<html><body>hello from the lwnet e2e server</body></html>\n' >"$WWW/index.html"
    head -c 16777216 /dev/urandom >"$WWW/blob16"
    lw_test_ca "$E2E_TMP/pki" || lw_die "e2e: could not make the test certificates"
    cp "$E2E_TMP/pki/ca.pem" "$SHARE/ca.pem"
    gcc -static -O2 -Wall -Werror -o "$SHARE/lwtcp-c" "$E2E/lwtcp.c"
    lw_start_servers "$E2E_TMP/servers.log" files --root "$WWW" --state "$STATE" \
        --cert "$E2E_TMP/pki/server.pem" --key "$E2E_TMP/pki/server.key" ||
        lw_die "e2e: the loopback servers did not start"
    E2E_PIDS+=("$LW_STARTED")
    HTTP_PORT=${LW_PORTS[0]} TLS_PORT=${LW_PORTS[1]}
    printf 'HTTP_PORT=%s\nTLS_PORT=%s\n' "$HTTP_PORT" "$TLS_PORT" >"$SHARE/env.sh"
    printf 'GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >"$SHARE/request.txt"
}

# guest LABEL TIMEOUT [RUN-OPTION...] -- COMMAND...: boots the guest with
# `./linux-wasm.sh run`, output in $E2E_TMP/LABEL.out/.err; returns the status.
guest() {
    local label=$1 timeout=$2
    shift 2
    local rc=0
    LW_SESSION=$E2E_TMP/session-$label "$LW_ROOT/linux-wasm.sh" run --no-build --store "$STORE" \
        --share "$SHARE" --allow "127.0.0.1/32:$HTTP_PORT" --allow "127.0.0.1/32:$TLS_PORT" \
        --extra-ca "$E2E_TMP/pki/ca.pem" --timeout "$timeout" "$@" \
        </dev/null >"$E2E_TMP/$label.out" 2>"$E2E_TMP/$label.err" || rc=$?
    return "$rc"
}

# guest_script LABEL TIMEOUT [RUN-OPTION...]: the guest runs the script on
# stdin of this function (from /mnt/host/LABEL.sh, with env.sh sourced).
guest_script() {
    local label=$1 timeout=$2
    shift 2
    { echo 'set -u; . /mnt/host/env.sh'; cat; } >"$SHARE/$label.sh"
    guest "$label" "$timeout" "$@" -- sh /mnt/host/"$label".sh
}

# show LABEL: the guest's output and the run's errors, for a failed check.
show() {
    echo "--- $1: stdout" >&2
    tail -n 30 "$E2E_TMP/$1.out" >&2 || true
    echo "--- $1: stderr" >&2
    tail -n 30 "$E2E_TMP/$1.err" >&2 || true
}

# pass NAME / fail NAME LABEL: record a check; a failure shows the run's output.
pass() { lw_result pass "e2e: $1"; }
fail() {
    lw_result fail "e2e: $1"
    show "$2"
}
# verdict STATUS LABEL NAME: records the check NAME as passed when STATUS
# is 0, else as failed with the output of the run LABEL; returns STATUS.
# (Scenarios run as `scenario_NAME || rc=1`, without errexit, so a failed
# condition on the line before it reaches it.)
verdict() {
    if [ "$1" = 0 ]; then pass "$3"; else fail "$3" "$2"; fi
    return "$1"
}

# body FILE: the bytes after the HTTP header of a saved response.
body() {
    python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); i = d.find(b"\r\n\r\n")
sys.exit(1) if i < 0 else sys.stdout.buffer.write(d[i + 4:])' "$1"
}
same_body() { cmp -s <(body "$1") "$2"; }
status_line_ok() { head -c 64 "$1" | grep -q '^HTTP/1.[01] 200'; }
out_has() { grep -qF -- "$2" "$E2E_TMP/$1.out"; }

# after_marker FILE SECONDS CMD...: in the background, runs CMD once FILE
# exists (checked every 50 ms), giving up after SECONDS.
after_marker() {
    local file=$1 limit=$2
    shift 2
    (
        local i
        for ((i = 0; i < limit * 20; i++)); do
            if [ -e "$file" ]; then "$@"; exit 0; fi
            sleep 0.05
        done
        echo "e2e: $file never appeared" >&2
    ) &
    # shellcheck disable=SC2034 # waited for by the scenarios
    AFTER_PID=$!
}

# kill_in_session LABEL NAME [SIGNAL]: signals the process NAME (lwproxy,
# lwhost) of the run whose session is LABEL.
kill_in_session() {
    local pidfile=$E2E_TMP/session-$1/$2.pid
    [ -f "$pidfile" ] || { echo "e2e: no $pidfile" >&2; return 1; }
    kill "-${3:-TERM}" "$(cat "$pidfile")"
}

# e2e_registries: three signed registries under $WWW, all built with
# lwpkg-index and a test key: repo-good (hello, and greet which depends on it),
# repo-badpkg (greet's bytes changed after signing), repo-badindex (the index
# changed after signing). The public key goes to /mnt/host/keys/test.pub.
e2e_registries() {
    [ -f "$WWW/repo-good/index.json" ] && return 0
    local indexer=$LW_ROOT/target/release/lwpkg-index reg=$LW_ROOT/tools/demo-registry.sh d
    mkdir -p "$SHARE/keys" "$E2E_TMP/keys" "$E2E_TMP/pkgsrc"
    "$indexer" keygen --out "$E2E_TMP/keys/test" >/dev/null
    cp "$E2E_TMP/keys/test.pub" "$SHARE/keys/test.pub"
    gcc -static -Os -s -o "$E2E_TMP/pkgsrc/hello" "$LW_ROOT/tools/demo/hello.c"
    printf '#!/bin/sh\nhello "$@" && echo "greet: ok"\n' >"$E2E_TMP/pkgsrc/greet"
    for d in repo-good repo-badpkg repo-badleaf repo-badindex; do
        mkdir -p "$WWW/$d"
        bash "$reg" package "$WWW/$d" hello 1.0 "$E2E_TMP/pkgsrc/hello"
        bash "$reg" package "$WWW/$d" greet 2.1 "$E2E_TMP/pkgsrc/greet" hello
        "$indexer" build "$WWW/$d" --sign "$E2E_TMP/keys/test.key" >/dev/null
    done
    printf '\n# tampered\n' >>"$WWW/repo-badpkg/greet-2.1"
    printf 'tampered' >>"$WWW/repo-badleaf/hello-1.0"
    sed -i 's/"2.1"/"2.2"/' "$WWW/repo-badindex/index.json"
    cmp -s "$WWW/repo-good/index.json" "$WWW/repo-badindex/index.json" && lw_die "e2e: could not tamper with the index"
    # What every pkg/sync guest script starts with.
    cat >"$SHARE/pkg-env.sh" <<'EOF'
mkdir -p /etc/lwpkg/keys
cp /mnt/host/keys/test.pub /etc/lwpkg/keys/test.pub
use_repo() { echo "http://127.0.0.1:$HTTP_PORT/$1/" >/etc/lwpkg/repositories; }
leftovers() { ls /opt/packages 2>/dev/null | sed 's/^/left: /'; ls /usr/local/bin 2>/dev/null | sed 's/^/link: /'; }
EOF
}
