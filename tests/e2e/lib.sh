# shellcheck shell=bash
# Helpers and scenarios of the e2e tier (tools/test/e2e.sh) and the system
# benchmark (tools/bench/system.sh). Source after tools/lib.sh.

E2E=${E2E:-$LW_ROOT/tests/e2e}
# Scenarios run by the tier, in order. One whose part had not landed when the
# tier was finished goes into E2E_LEFT_OUT instead and is reported, not faked.
# shellcheck disable=SC2034 # read by tools/test/e2e.sh
E2E_SCENARIOS=(boot http seed tls pkg sync failures)
# shellcheck disable=SC2034 # read by tools/test/e2e.sh
E2E_LEFT_OUT=()

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

# e2e_ca: a throwaway CA and a server certificate for localhost/127.0.0.1.
e2e_ca() {
    local d=$E2E_TMP/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=lwnet-e2e-test-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj /CN=localhost -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$d/ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext" -out "$d/server.pem" 2>/dev/null
}

# e2e_setup: test files, the CA, the seed's C lwtcp and the loopback servers.
e2e_setup() {
    mkdir -p "$SHARE" "$OUT" "$WWW" "$STATE" "$STORE"
    printf '<html><body>hello from the lwnet e2e server</body></html>\n' >"$WWW/index.html"
    head -c 16777216 /dev/urandom >"$WWW/blob16"
    e2e_ca
    cp "$E2E_TMP/pki/ca.pem" "$SHARE/ca.pem"
    gcc -static -O2 -Wall -Werror -o "$SHARE/lwtcp-c" "$E2E/lwtcp.c"
    python3 -u "$E2E/servers.py" --root "$WWW" --state "$STATE" \
        --cert "$E2E_TMP/pki/server.pem" --key "$E2E_TMP/pki/server.key" \
        >"$E2E_TMP/servers.out" 2>"$E2E_TMP/servers.log" &
    E2E_PIDS+=($!)
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q '^ready' "$E2E_TMP/servers.out" && break
        sleep 0.1
    done
    read -r _ HTTP_PORT TLS_PORT <"$E2E_TMP/servers.out" || lw_die "e2e: the loopback servers did not start"
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

# body FILE: the bytes after the HTTP header of a saved response.
body() {
    python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); i = d.find(b"\r\n\r\n")
sys.exit(1) if i < 0 else sys.stdout.buffer.write(d[i + 4:])' "$1"
}
same_body() { cmp -s <(body "$1") "$2"; }
status_line_ok() { head -c 64 "$1" | grep -q '^HTTP/1.[01] 200'; }
out_has() { grep -qF -- "$2" "$E2E_TMP/$1.out"; }

# --- scenarios -----------------------------------------------------------------

scenario_boot() {
    local rc=0 r=0
    # shellcheck disable=SC2016 # $PATH is the guest's
    guest boot 60 -- 'test -c /dev/lwnet && test -c /dev/lwstore && echo PATH=$PATH && exit 7' || r=$?
    if [ "$r" = 7 ] && out_has boot "PATH=/usr/local/bin"; then
        pass "boot: guest boots with /dev/lwnet and /dev/lwstore; run -- passes the exit status"
    else
        fail "boot: guest boots with /dev/lwnet and /dev/lwstore; run -- passes the exit status" boot
        rc=1
    fi
    r=0
    printf 'line one\nline two\n' | LW_SESSION=$E2E_TMP/session-stdin "$LW_ROOT/linux-wasm.sh" run \
        --no-build --store "$STORE" --timeout 60 -- 'wc -l' >"$E2E_TMP/stdin.out" 2>"$E2E_TMP/stdin.err" || r=$?
    if [ "$r" = 0 ] && [ "$(tr -d " \r" <"$E2E_TMP/stdin.out")" = 2 ]; then
        pass "boot: run -- gives the command its standard input"
    else
        fail "boot: run -- gives the command its standard input" stdin
        rc=1
    fi
    return "$rc"
}

scenario_http() {
    local rc=0
    guest_script http 120 <<'EOF' || true
printf 'GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' | lwtcp 127.0.0.1 "$HTTP_PORT" >/mnt/host/out/page.http
echo "page=$?"
printf 'GET /blob16 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' | lwtcp 127.0.0.1 "$HTTP_PORT" >/tmp/blob.http
echo "blob=$?"
tail -c 16777216 /tmp/blob.http | sha256sum
cp /tmp/blob.http /mnt/host/out/blob.http
EOF
    local want
    want=$(sha256sum <"$WWW/blob16" | cut -d' ' -f1)
    if out_has http "page=0" && status_line_ok "$OUT/page.http" && same_body "$OUT/page.http" "$WWW/index.html"; then
        pass "lwtcp: HTTP/1.0 page through driver, lwhost and lwproxy"
    else
        fail "lwtcp: HTTP/1.0 page through driver, lwhost and lwproxy" http
        rc=1
    fi
    if out_has http "blob=0" && out_has http "$want" && same_body "$OUT/blob.http" "$WWW/blob16"; then
        pass "lwtcp: 16 MiB binary file, sha256 equal in the guest and byte for byte on the host"
    else
        fail "lwtcp: 16 MiB binary file, sha256 equal in the guest and byte for byte on the host" http
        rc=1
    fi
    return "$rc"
}

scenario_seed() {
    local rc=0
    guest_script seed 60 <<'EOF' || true
echo -e "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" | lwtcp 127.0.0.1 "$HTTP_PORT" >/mnt/host/out/seed1.http
cd /tmp && cp /mnt/host/request.txt request.txt
lwtcp 127.0.0.1 "$HTTP_PORT" < request.txt > response.txt
cp response.txt /mnt/host/out/seed2.http
cp /mnt/host/lwtcp-c /tmp/lwtcp-c
/tmp/lwtcp-c 127.0.0.1 "$HTTP_PORT" < request.txt > /mnt/host/out/seed-c.http
echo "seed-c=$?"
EOF
    if status_line_ok "$OUT/seed1.http" && same_body "$OUT/seed1.http" "$WWW/index.html"; then
        pass "seed 000: echo -e ... | lwtcp HOST 80 (loopback host) prints the response"
    else
        fail "seed 000: echo -e ... | lwtcp HOST 80 (loopback host) prints the response" seed
        rc=1
    fi
    if status_line_ok "$OUT/seed2.http" && same_body "$OUT/seed2.http" "$WWW/index.html"; then
        pass "seed 000: lwtcp HOST PORT < request.txt > response.txt"
    else
        fail "seed 000: lwtcp HOST PORT < request.txt > response.txt" seed
        rc=1
    fi
    if out_has seed "seed-c=0" && same_body "$OUT/seed-c.http" "$WWW/index.html"; then
        pass "seed 000: the seed's own C lwtcp.c (LWNET_OPEN as the seed defines it) works unchanged"
    else
        fail "seed 000: the seed's own C lwtcp.c (LWNET_OPEN as the seed defines it) works unchanged" seed
        rc=1
    fi
    return "$rc"
}

scenario_tls() {
    local rc=0
    guest_script tls 60 <<'EOF' || true
printf 'GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n' | lwtcp --tls localhost "$TLS_PORT" >/mnt/host/out/tls.http
echo "tls=$?"
# The plain HTTP port is not TLS: the handshake at the proxy must fail cleanly.
printf 'GET / HTTP/1.0\r\n\r\n' | lwtcp --tls localhost "$HTTP_PORT" >/dev/null 2>/tmp/err
echo "not-tls=$?"
cat /tmp/err
EOF
    if out_has tls "tls=0" && status_line_ok "$OUT/tls.http" && same_body "$OUT/tls.http" "$WWW/index.html"; then
        pass "lwtcp --tls: HTTPS through the proxy to a loopback server of a test CA"
    else
        fail "lwtcp --tls: HTTPS through the proxy to a loopback server of a test CA" tls
        rc=1
    fi
    if ! out_has tls "not-tls=0" && out_has tls "not-tls="; then
        pass "lwtcp --tls: a server that does not speak TLS gives a clear connect error"
    else
        fail "lwtcp --tls: a server that does not speak TLS gives a clear connect error" tls
        rc=1
    fi
    return "$rc"
}

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
}

# kill_in_session LABEL NAME [SIGNAL]: signals the process NAME (lwproxy,
# lwhost) of the run whose session is LABEL.
kill_in_session() {
    local pidfile=$E2E_TMP/session-$1/$2.pid
    [ -f "$pidfile" ] || { echo "e2e: no $pidfile" >&2; return 1; }
    kill "-${3:-TERM}" "$(cat "$pidfile")"
}

scenario_failures() {
    local rc=0
    guest_script policy 60 <<'EOF' || true
# 127.0.0.2 is loopback but not allowed: the proxy must refuse it by policy.
lwtcp 127.0.0.2 "$HTTP_PORT" </dev/null >/dev/null 2>/tmp/err
echo "denied=$?"
cat /tmp/err
printf 'GET /index.html HTTP/1.0\r\n\r\n' | lwtcp 127.0.0.1 "$HTTP_PORT" >/dev/null
echo "after=$?"
EOF
    if out_has policy "denied=2" && grep -qi "policy" "$E2E_TMP/policy.out" && out_has policy "after=0"; then
        pass "failure: a non-public address is refused by policy (EACCES, exit 2, reason printed)"
    else
        fail "failure: a non-public address is refused by policy (EACCES, exit 2, reason printed)" policy
        rc=1
    fi

    rm -f "$STATE/slow-started"
    after_marker "$STATE/slow-started" 60 eval 'sleep 1; kill_in_session cut lwproxy TERM'
    guest_script cut 90 <<'EOF' || true
printf 'GET /slow/67108864 HTTP/1.0\r\n\r\n' | lwtcp 127.0.0.1 "$HTTP_PORT" >/tmp/slow 2>/tmp/err
echo "cut=$?"
echo "got=$(wc -c </tmp/slow)"
cat /tmp/err
# With the proxy gone, a new connection must fail promptly, not hang.
printf 'GET / HTTP/1.0\r\n\r\n' | lwtcp -w 5 127.0.0.1 "$HTTP_PORT" >/dev/null 2>&1
echo "reconnect=$?"
echo guest-still-usable
EOF
    wait
    if out_has cut "cut=3" && ! out_has cut "got=67108" && out_has cut "guest-still-usable" && ! out_has cut "reconnect=0"; then
        pass "failure: proxy stopped mid-transfer: lwtcp fails (exit 3), the guest stays usable"
    else
        fail "failure: proxy stopped mid-transfer: lwtcp fails (exit 3), the guest stays usable" cut
        rc=1
    fi

    guest_script ctrlc 60 <<'EOF' || true
# timeout -s INT is Ctrl-C without a terminal: SIGINT while lwtcp blocks in read().
start=$(cut -d' ' -f1 /proc/uptime)
printf 'GET /hold HTTP/1.0\r\n\r\n' | timeout -s INT 2 lwtcp 127.0.0.1 "$HTTP_PORT" >/dev/null
echo "interrupted=$?"
end=$(cut -d' ' -f1 /proc/uptime)
awk -v s="$start" -v e="$end" 'BEGIN { printf "late=%s\n", (e - s - 2 < 1) ? "no" : "yes" }'
printf 'GET /index.html HTTP/1.0\r\n\r\n' | lwtcp 127.0.0.1 "$HTTP_PORT" >/tmp/after
echo "after=$?"
EOF
    if out_has ctrlc "interrupted=" && ! out_has ctrlc "interrupted=0" && out_has ctrlc "late=no" && out_has ctrlc "after=0"; then
        pass "failure: SIGINT during a blocking read returns within a second; the guest stays usable"
    else
        fail "failure: SIGINT during a blocking read returns within a second; the guest stays usable" ctrlc
        rc=1
    fi
    scenario_ctrlc_tty || rc=1
    return "$rc"
}

# The real thing: the interactive shell on a terminal, Ctrl-C typed into it.
scenario_ctrlc_tty() {
    local r=0
    LW_SESSION=$E2E_TMP/session-tty python3 "$E2E/tty.py" --timeout 60 --log "$E2E_TMP/tty.out" -- \
        "$LW_ROOT/linux-wasm.sh" run --no-build --store "$STORE" --share "$SHARE" \
        --allow "127.0.0.1/32:$HTTP_PORT" 2>"$E2E_TMP/tty.err" || r=$?
    if [ "$r" = 0 ]; then
        pass "failure: Ctrl-C typed at the interactive shell stops a blocked lwtcp within a second"
    else
        fail "failure: Ctrl-C typed at the interactive shell stops a blocked lwtcp within a second" tty
        return 1
    fi
}
