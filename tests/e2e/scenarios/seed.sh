# shellcheck shell=bash
# e2e scenario "seed" (tools/test/e2e.sh seed): the first usage lines of lwtcp as documented, and the C lwtcp.c client.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

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
