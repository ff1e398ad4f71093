# shellcheck shell=bash
# e2e scenario "failures" (tools/test/e2e.sh failures): policy denial, proxy stopped mid-transfer, Ctrl-C in a blocking read.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

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
