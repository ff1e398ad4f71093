# shellcheck shell=bash
# e2e scenario "http" (tools/test/e2e.sh http): lwtcp fetches an HTTP/1.0 page and a 16 MiB file byte for byte.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

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
