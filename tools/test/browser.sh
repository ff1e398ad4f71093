#!/usr/bin/env bash
# Tier 5: headless Chromium runs the browser half of lwhost (host/web: the
# wasm32 worker side, worker.js, main.js, IndexedDB) against the real
# lwproxy and a loopback HTTP server; a stand-in kernel module in Web Workers
# calls the host ABI. The page reports each check; each is one result here.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"
# shellcheck source=host/web/tools/harness.sh
source "$LW_ROOT/host/web/tools/harness.sh"

lw_need_apt "${LW_APT_BASE[@]}" "${LW_APT_BROWSER[@]}"
lw_need_rust
trap lw_web_stop EXIT

# The browser crates live in their own workspace (wasm32 only), so the unit
# tier's fmt/clippy does not see them: check them here.
lw_check browser.web_fmt bash "$LW_ROOT/host/web/build.sh" fmt-check || true
lw_check browser.web_clippy bash "$LW_ROOT/host/web/build.sh" clippy || true

if ! lw_web_start || ! lw_web_start_auth_proxy; then
    lw_result fail browser.setup
    exit 1
fi
lw_result pass browser.setup

profile=$(mktemp -d "${TMPDIR:-/tmp}/lwnet-chromium.XXXXXX")
url="http://127.0.0.1:$SITE_PORT/test/index.html?proxy=$PROXY_PORT&target=$TARGET_PORT&denied=$DENIED_PORT&marker=$MARKER&authproxy=$AUTH_PROXY_PORT&token=$TOKEN"
rc=0
json=$(timeout 300 python3 "$LW_ROOT/host/web/tools/chromium.py" --url "$url" --timeout 240 --profile "$profile") || rc=$?
rm -rf "$profile"
if [ "$rc" -ne 0 ] || [ -z "$json" ]; then
    lw_result fail browser.page_finished
    exit 1
fi
lw_result pass browser.page_finished

# One result per check the page reported.
failed=0
while read -r status name detail; do
    if [ "$status" = ok ]; then
        lw_result pass "browser.$name"
    else
        lw_result fail "browser.$name"
        printf '  %s\n' "$detail"
        failed=1
    fi
done < <(python3 -c '
import json, sys
for name, r in json.loads(sys.argv[1]).items():
    print("ok" if r["ok"] else "fail", name, r["detail"][:400].replace("\n", " "))
' "$json")
exit "$failed"
