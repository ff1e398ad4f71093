# shellcheck shell=bash
# e2e scenario "tls" (tools/test/e2e.sh tls): lwtcp --tls through the proxy to a TLS server of a test CA.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

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
