# shellcheck shell=bash
# e2e scenario "cli" (tools/test/e2e.sh cli): usage errors, the offline wasm build, serve, incremental build.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

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
    web_port=$(lw_free_port)
    proxy_port=$(lw_free_port)
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
