# shellcheck shell=bash
# Helpers and scenarios of the e2e tier (tools/test/e2e.sh) and the system
# benchmark (tools/bench/system.sh). Source after tools/lib.sh.

E2E=${E2E:-$LW_ROOT/tests/e2e}
# Scenarios run by the tier, in order.
# shellcheck disable=SC2034 # read by tools/test/e2e.sh
E2E_SCENARIOS=(cli boot http seed tls pkg pkgfresh sync failures sync_cases)
# tools/test/e2e.sh NAME... runs only the named ones.

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
        grep -q '^ready' "$E2E_TMP/servers.out" 2>/dev/null && break
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
    r=0
    # shellcheck disable=SC2016 # $DEMO_PORT is the guest's
    guest auth 60 --auth -- 'printf "GET / HTTP/1.0\r\n\r\n" | lwtcp 127.0.0.1 $DEMO_PORT' || r=$?
    if [ "$r" = 0 ] && out_has auth "lwnet demo page" && grep -q 'identity.*lwnet-run-' "$E2E_TMP/session-auth/lwproxy.log"; then
        pass "boot: run --auth: lwproxy checks tokens, lwhost presents one (audit shows its identity), the page loads"
    else
        fail "boot: run --auth: lwproxy checks tokens, lwhost presents one (audit shows its identity), the page loads" auth
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
    AFTER_PID=$!
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
    wait "$AFTER_PID" || true
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
    LW_SESSION=$E2E_TMP/session-tty python3 "$E2E/terminal.py" --timeout 60 --log "$E2E_TMP/tty.out" -- \
        "$LW_ROOT/linux-wasm.sh" run --no-build --store "$STORE" --share "$SHARE" \
        --allow "127.0.0.1/32:$HTTP_PORT" 2>"$E2E_TMP/tty.err" || r=$?
    if [ "$r" = 0 ]; then
        pass "failure: Ctrl-C typed at the interactive shell stops a blocked lwtcp within a second"
    else
        fail "failure: Ctrl-C typed at the interactive shell stops a blocked lwtcp within a second" tty
        return 1
    fi
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

scenario_pkg() {
    local rc=0
    e2e_registries
    guest_script pkg 120 <<'EOF' || true
. /mnt/host/pkg-env.sh
use_repo repo-badindex
lwpkg update; echo "update-badindex=$?"
lwpkg install greet; echo "install-badindex=$?"
leftovers | sed 's/^/badindex-/'
use_repo repo-badleaf
lwpkg update; echo "update-badleaf=$?"
lwpkg install hello; echo "install-badleaf=$?"
leftovers | sed 's/^/badleaf-/'
use_repo repo-badpkg
lwpkg update; echo "update-badpkg=$?"
lwpkg install greet; echo "install-badpkg=$?"
leftovers | sed 's/^/badpkg-/'
lwpkg remove hello >/dev/null 2>&1
use_repo repo-good
lwpkg update; echo "update=$?"
lwpkg install greet; echo "install=$?"
greet e2e; echo "run=$?"
lwpkg list | sed 's/^/list: /'
lwpkg remove greet; echo "remove=$?"
[ -e /usr/local/bin/greet ] || [ -L /usr/local/bin/greet ] || echo "greet-link-gone"
[ -e /opt/packages/greet ] || echo "greet-dir-gone"
greet x >/dev/null 2>&1 || echo "greet-not-runnable"
hello >/dev/null && echo "hello-still-runs"
EOF
    if out_has pkg "update-badindex=" && ! out_has pkg "update-badindex=0" && ! out_has pkg "install-badindex=0" &&
        ! grep -q '^badindex-' "$E2E_TMP/pkg.out"; then
        pass "lwpkg: an index whose signature does not match is refused, nothing installed"
    else
        fail "lwpkg: an index whose signature does not match is refused, nothing installed" pkg
        rc=1
    fi
    if out_has pkg "update-badleaf=0" && out_has pkg "install-badleaf=" && ! out_has pkg "install-badleaf=0" &&
        ! grep -q '^badleaf-' "$E2E_TMP/pkg.out"; then
        pass "lwpkg: a package whose sha256 does not match is refused, nothing installed"
    else
        fail "lwpkg: a package whose sha256 does not match is refused, nothing installed" pkg
        rc=1
    fi
    # All or nothing: the verified dependency must not be installed either.
    if out_has pkg "update-badpkg=0" && out_has pkg "install-badpkg=" && ! out_has pkg "install-badpkg=0" &&
        ! grep -q '^badpkg-' "$E2E_TMP/pkg.out"; then
        pass "lwpkg: a tampered package that has a dependency is refused; nothing (nor its dependency) is installed"
    else
        fail "lwpkg: a tampered package that has a dependency is refused; nothing (nor its dependency) is installed" pkg
        rc=1
    fi
    if out_has pkg "update=0" && out_has pkg "install=0" && out_has pkg "run=0" &&
        out_has pkg "Hello from an lwpkg package" && out_has pkg "for e2e" && out_has pkg "greet: ok"; then
        pass "lwpkg: update + install of a package with a dependency from a signed loopback registry; it runs"
    else
        fail "lwpkg: update + install of a package with a dependency from a signed loopback registry; it runs" pkg
        rc=1
    fi
    if grep -q '^list: .*greet' "$E2E_TMP/pkg.out" && grep -q '^list: .*hello' "$E2E_TMP/pkg.out" &&
        out_has pkg "remove=0" && out_has pkg "greet-link-gone" && out_has pkg "greet-dir-gone" &&
        out_has pkg "greet-not-runnable" && out_has pkg "hello-still-runs"; then
        pass "lwpkg: list shows both; remove takes away exactly the package removed"
    else
        fail "lwpkg: list shows both; remove takes away exactly the package removed" pkg
        rc=1
    fi
    return "$rc"
}

# The guest's view of /home, /root and /opt: type, mode, size, sha256, link target.
e2e_manifest_script() {
    cat >"$SHARE/manifest.sh" <<'EOF'
manifest() {
    find /home /root /opt | LC_ALL=C sort | while IFS= read -r f; do
        if [ -L "$f" ]; then echo "L $f -> $(readlink "$f")"
        elif [ -d "$f" ]; then echo "D $f $(stat -c %a "$f")"
        else echo "F $f $(stat -c '%a %s' "$f") $(sha256sum <"$f" | cut -d' ' -f1)"; fi
    done
}
EOF
}

scenario_sync() {
    local rc=0
    e2e_registries
    e2e_manifest_script
    rm -rf "$STORE" && mkdir -p "$STORE"
    guest_script sync1 180 <<'EOF' || true
. /mnt/host/pkg-env.sh
. /mnt/host/manifest.sh
mkdir -p /home/alice/docs /home/alice/empty /root/empty-dir /opt/data
head -c 4194304 /dev/urandom >/home/alice/big.bin
echo "only for root" >/root/secret && chmod 600 /root/secret
ln -s ../big.bin /home/alice/docs/link-to-big
ln -s /root/secret /home/alice/abs-link
printf 'line 1\nline 2\n' >/opt/data/note.txt
use_repo repo-good
lwpkg update >/dev/null && lwpkg install greet; echo "install=$?"
lwsync save; echo "save=$?"
manifest >/mnt/host/out/manifest1
EOF
    guest_script sync2 180 <<'EOF' || true
. /mnt/host/manifest.sh
manifest >/mnt/host/out/manifest2
greet after-reboot; echo "pkg-run=$?"
EOF
    if out_has sync1 "save=0" && [ -s "$OUT/manifest1" ] && grep -q 'F /home/alice/big.bin 644 4194304' "$OUT/manifest1" &&
        grep -q '^F /root/secret 600 ' "$OUT/manifest1" && grep -q '^D /home/alice/empty ' "$OUT/manifest1" &&
        grep -q '^L /home/alice/docs/link-to-big -> ../big.bin' "$OUT/manifest1" && cmp -s "$OUT/manifest1" "$OUT/manifest2"; then
        pass "lwsync: save, power off, new boot: /home /root /opt back byte for byte (4 MiB file, symlinks, 0600, empty dirs)"
    else
        diff "$OUT/manifest1" "$OUT/manifest2" | head -n 20 >&2 || true
        fail "lwsync: save, power off, new boot: /home /root /opt back byte for byte (4 MiB file, symlinks, 0600, empty dirs)" sync2
        rc=1
    fi
    if out_has sync1 "install=0" && out_has sync2 "pkg-run=0" && out_has sync2 "greet: ok"; then
        pass "lwsync: a package installed before the save works after the new boot"
    else
        fail "lwsync: a package installed before the save works after the new boot" sync2
        rc=1
    fi

    # kill -9 of lwhost in the middle of a save: the save fails, and the next
    # boot restores the snapshot before it, complete.
    after_marker "$OUT/saving" 120 eval 'sleep 0.3; kill_in_session sync3 lwhost KILL'
    guest_script sync3 180 <<'EOF' || true
echo "changed after the first save" >/root/secret
mkdir -p /home/alice/new
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do head -c 2097152 /dev/urandom >/home/alice/new/f$i; done
touch /mnt/host/out/saving
lwsync save; echo "save=$?"
EOF
    wait "$AFTER_PID" || true
    guest_script sync4 180 <<'EOF' || true
. /mnt/host/manifest.sh
manifest >/mnt/host/out/manifest4
EOF
    if out_has sync3 "save=" && ! out_has sync3 "save=0" && cmp -s "$OUT/manifest1" "$OUT/manifest4"; then
        pass "failure: kill -9 of lwhost during lwsync save; the next boot restores the previous snapshot"
    else
        diff "$OUT/manifest1" "$OUT/manifest4" | head -n 20 >&2 || true
        fail "failure: kill -9 of lwhost during lwsync save; the next boot restores the previous snapshot" sync3
        show sync4
        rc=1
    fi
    return "$rc"
}

# The entry point itself: usage errors, the offline wasm build, incremental build.
scenario_cli() {
    local rc=0 r=0 start
    "$LW_ROOT/linux-wasm.sh" run --help >"$E2E_TMP/cli-help.out" 2>&1 || r=$?
    local r2=0
    "$LW_ROOT/linux-wasm.sh" run --no-such-option >"$E2E_TMP/cli-bad.out" 2>&1 || r2=$?
    if [ "$r" = 0 ] && grep -q -- '--share DIR' "$E2E_TMP/cli-help.out" && [ "$r2" = 2 ] &&
        grep -q "unknown option" "$E2E_TMP/cli-bad.out"; then
        pass "cli: run --help exits 0; a usage error exits 2 with a message"
    else
        fail "cli: run --help exits 0; a usage error exits 2 with a message" cli-help
        rc=1
    fi
    # An unreachable upstream (a closed loopback port) stands in for no network.
    r=0
    start=$SECONDS
    LW_TARGET=wasm LW_UPSTREAM_URL=https://127.0.0.1:1/linux-wasm.git "$LW_ROOT/linux-wasm.sh" build \
        >"$E2E_TMP/cli-wasm.out" 2>&1 || r=$?
    if [ "$r" != 0 ] && [ $((SECONDS - start)) -lt 15 ] && grep -q "could not be reached" "$E2E_TMP/cli-wasm.out" &&
        grep -q "LW_TARGET=um" "$E2E_TMP/cli-wasm.out"; then
        pass "cli: the wasm build without network stops at once, names what it could not reach, points to LW_TARGET=um"
    else
        fail "cli: the wasm build without network stops at once, names what it could not reach, points to LW_TARGET=um" cli-wasm
        rc=1
    fi
    # serve: a stand-in site/ is enough to check the headers and the proxy beside it.
    local site=$E2E_TMP/site web_port proxy_port serve_pid ok=0 i
    mkdir -p "$site" && echo '<html>stand-in</html>' >"$site/index.html"
    web_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    proxy_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$LW_ROOT/linux-wasm.sh" serve --site "$site" --port "$web_port" --proxy-port "$proxy_port" \
        >"$E2E_TMP/cli-serve.out" 2>&1 &
    serve_pid=$!
    for ((i = 0; i < 900; i++)); do # up to 3 min: serve may build lwproxy first
        if curl -sfI "http://127.0.0.1:$web_port/" >"$E2E_TMP/cli-serve.headers" 2>/dev/null &&
            curl -sf "http://127.0.0.1:$proxy_port/health" >/dev/null 2>&1; then
            ok=1
            break
        fi
        sleep 0.2
    done
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    if [ "$ok" = 1 ] && grep -qi '^Cross-Origin-Opener-Policy: same-origin' "$E2E_TMP/cli-serve.headers" &&
        grep -qi '^Cross-Origin-Embedder-Policy: require-corp' "$E2E_TMP/cli-serve.headers" &&
        ! curl -sf "http://127.0.0.1:$proxy_port/health" >/dev/null 2>&1; then
        pass "cli: serve sends COOP/COEP, starts lwproxy beside the site, and stops both"
    else
        cat "$E2E_TMP/cli-serve.headers" >>"$E2E_TMP/cli-serve.out" 2>/dev/null || true
        fail "cli: serve sends COOP/COEP, starts lwproxy beside the site, and stops both" cli-serve
        rc=1
    fi
    r=0
    start=$SECONDS
    LW_TARGET=um "$LW_ROOT/linux-wasm.sh" build >"$E2E_TMP/cli-rebuild.out" 2>&1 || r=$?
    local took=$((SECONDS - start))
    echo "second um build: $took s" >>"$E2E_TMP/cli-rebuild.out"
    if [ "$r" = 0 ] && [ "$took" -lt 30 ] && grep -q "kernel: up to date" "$E2E_TMP/cli-rebuild.out"; then
        pass "cli: a second um build with nothing changed takes seconds ($took s)"
    else
        fail "cli: a second um build with nothing changed takes seconds ($took s)" cli-rebuild
        rc=1
    fi
    return "$rc"
}

# shellcheck source=tests/e2e/lwpkg-fresh.sh
source "$E2E/lwpkg-fresh.sh"
# shellcheck source=tests/e2e/sync.sh
source "$E2E/sync.sh"
