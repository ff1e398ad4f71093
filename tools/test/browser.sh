#!/usr/bin/env bash
# Tier 5: headless Chromium runs the browser half of lwhost (host/web: the
# wasm32 worker side, worker.js, main.js, IndexedDB) against the real
# lwproxy and a loopback HTTP server; a fake kernel module in Web Workers
# calls the host ABI. The page reports each check; each is one result here.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"
# shellcheck source=host/web/tools/harness.sh
source "$LW_ROOT/host/web/tools/harness.sh"

# shellcheck source=tests/fake-upstream/lib.sh
source "$LW_ROOT/tests/fake-upstream/lib.sh"

lw_need_apt "${LW_APT_BASE[@]}" "${LW_APT_BROWSER[@]}"
lw_need_rust
mkdir -p "$LW_BUILD"
site_tmp=$(mktemp -d "$LW_BUILD/browser-site.XXXXXX")
trap 'lw_web_stop; rm -rf "$site_tmp"' EXIT

# The browser crates live in their own workspace (wasm32 only), so the unit
# tier's fmt/clippy does not see them: check them here.
lw_check browser.web_fmt bash "$LW_ROOT/host/web/build.sh" fmt-check || true
lw_check browser.web_clippy bash "$LW_ROOT/host/web/build.sh" clippy || true

# The site as `./linux-wasm.sh build` assembles it, against the fake upstream
# (tests/fake-upstream: its runtime and stand-in vmlinux), served at /site/.
if lw_fake_upstream "$site_tmp" && lw_fake_build "$site_tmp" "$site_tmp/build.log"; then
    lw_result pass browser.site_built
    LW_WEB_SITE=$site_tmp/site
else
    tail -n 20 "$site_tmp/build.log" 2>/dev/null || true
    lw_result fail browser.site_built
fi

if ! lw_web_start || ! lw_web_start_auth_proxy; then
    lw_result fail browser.setup
    exit 1
fi
lw_result pass browser.setup

# page NAME URL: runs one test page in a fresh Chromium profile; one result
# per check it reports.
page() {
    local name=$1 url=$2 profile json rc=0 status check detail failed=0
    profile=$(mktemp -d "${TMPDIR:-/tmp}/lwnet-chromium.XXXXXX")
    json=$(timeout 300 python3 "$LW_ROOT/host/web/tools/chromium.py" --url "$url" --timeout 240 --profile "$profile") || rc=$?
    rm -rf "$profile"
    if [ "$rc" -ne 0 ] || [ -z "$json" ]; then
        lw_result fail "browser.${name}_finished"
        return 1
    fi
    lw_result pass "browser.${name}_finished"
    while read -r status check detail; do
        if [ "$status" = ok ]; then
            lw_result pass "browser.$check"
        else
            lw_result fail "browser.$check"
            failed=1
        fi
        # Figures measured by a check are printed with it.
        if [ "$status" != ok ] || [ "$check" = irq_faster_than_timer ]; then printf '  %s\n' "$detail"; fi
    done < <(python3 -c '
import json, sys
for name, r in json.loads(sys.argv[1]).items():
    print("ok" if r["ok"] else "fail", name, r["detail"][:400].replace("\n", " "))
' "$json")
    return "$failed"
}

rc=0
page page "http://127.0.0.1:$SITE_PORT/test/index.html?proxy=$PROXY_PORT&target=$TARGET_PORT&denied=$DENIED_PORT&marker=$MARKER&authproxy=$AUTH_PROXY_PORT&token=$TOKEN" || rc=1
if [ -n "${LW_WEB_SITE:-}" ]; then
    # The page's configuration file names the test's proxy.
    printf '{"proxyUrl": "ws://127.0.0.1:%s/", "token": null}\n' "$PROXY_PORT" >"$LW_WEB_SITE/lwnet.json"
    page site "http://127.0.0.1:$SITE_PORT/test/site.html?proxy=$PROXY_PORT&target=$TARGET_PORT" || rc=1
    page site_plain "http://127.0.0.1:$SITE_PORT/plain/test/site.html?plain=1" || rc=1
else
    rc=1
fi
exit "$rc"
