# shellcheck shell=bash
# e2e scenario "usage" (tools/test/e2e.sh usage): lwtcp used as the README shows
# it (a request piped in, or redirected from a file), and the C client
# tests/e2e/lwtcp.c, written against the first /dev/lwnet interface.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

scenario_usage() {
    local rc=0
    guest_script usage 60 <<'EOF' || true
echo -e "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" | lwtcp 127.0.0.1 "$HTTP_PORT" >/mnt/host/out/usage1.http
cd /tmp && cp /mnt/host/request.txt request.txt
lwtcp 127.0.0.1 "$HTTP_PORT" < request.txt > response.txt
cp response.txt /mnt/host/out/usage2.http
cp /mnt/host/lwtcp-c /tmp/lwtcp-c
/tmp/lwtcp-c 127.0.0.1 "$HTTP_PORT" < request.txt > /mnt/host/out/usage-c.http
echo "usage-c=$?"
EOF
    status_line_ok "$OUT/usage1.http" && same_body "$OUT/usage1.http" "$WWW/index.html"
    verdict $? usage "usage: echo -e ... | lwtcp HOST 80 (loopback host) prints the response" || rc=1
    status_line_ok "$OUT/usage2.http" && same_body "$OUT/usage2.http" "$WWW/index.html"
    verdict $? usage "usage: lwtcp HOST PORT < request.txt > response.txt" || rc=1
    out_has usage "usage-c=0" && same_body "$OUT/usage-c.http" "$WWW/index.html"
    verdict $? usage "usage: a C client with its own copy of the first LWNET_OPEN/LWNET_CLOSE definitions works unchanged" || rc=1
    return "$rc"
}
