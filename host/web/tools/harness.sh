# shellcheck shell=bash
# Starts the loopback pieces the browser test and benchmark need: the target
# HTTP server, the REAL lwproxy (release build), the COOP/COEP site server.
# Source after tools/lib.sh; call lw_web_stop from an EXIT trap.

LW_WEB_PIDS=()
LW_WEB_TMP=""
LW_WEB_OUT=""

# lw_web_spawn NAME PATTERN CMD...: starts CMD with its output in files,
# waits (30 s) for PATTERN on its stdout; sets LW_WEB_OUT to that file.
# (Not run in $(...): the PID must be recorded in this shell.)
lw_web_spawn() {
    local name=$1 pattern=$2
    shift 2
    local out=$LW_WEB_TMP/$name.out err=$LW_WEB_TMP/$name.err
    "$@" >"$out" 2>"$err" &
    LW_WEB_PIDS+=($!)
    local pid=$! i
    for ((i = 0; i < 300; i++)); do
        grep -q "$pattern" "$out" 2>/dev/null && { LW_WEB_OUT=$out; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    lw_warn "$name did not start; its output:"
    cat "$out" "$err" >&2
    return 1
}

# lw_web_start: sets WEB_WASM, TARGET_PORT, PROXY_PORT, SITE_PORT, DENIED_PORT, MARKER.
lw_web_start() {
    LW_WEB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lwnet-web.XXXXXX")
    WEB_WASM=$(bash "$LW_ROOT/host/web/build.sh" build) || return 1
    # LW_WEB_REUSE_PROXY=1 (development only) reuses an existing build
    # instead of waiting for cargo's lock while others build.
    if [ -z "${LW_WEB_REUSE_PROXY:-}" ] || [ ! -x "$LW_ROOT/target/release/lwproxy" ]; then
        lw_info "building lwproxy (release)"
        cargo build --release -p lwproxy --manifest-path "$LW_ROOT/Cargo.toml" >&2 || return 1
    fi
    MARKER="lwnet-$RANDOM$RANDOM"
    local serve=$LW_ROOT/host/web/tools/serve.py
    lw_web_spawn target "^serving on" python3 "$serve" target --port 0 --marker "$MARKER" || return 1
    TARGET_PORT=$(sed -n 's/^serving on \([0-9]*\)$/\1/p' "$LW_WEB_OUT")
    # LW_WEB_SITE=DIR: an assembled site/ to serve at /site/ as well.
    lw_web_spawn site "^serving on" python3 "$serve" site --port 0 --wasm "$WEB_WASM" \
        ${LW_WEB_SITE:+--site "$LW_WEB_SITE"} || return 1
    SITE_PORT=$(sed -n 's/^serving on \([0-9]*\)$/\1/p' "$LW_WEB_OUT")
    # The target is admitted explicitly (loopback is denied by default);
    # the site server's port is not, so opening it is a policy denial.
    lw_web_spawn lwproxy "listening on" "$LW_ROOT/target/release/lwproxy" \
        --listen 127.0.0.1:0 --no-auth --allow "127.0.0.1/32:$TARGET_PORT" --ports "$TARGET_PORT" \
        --bytes-per-min 0 --conns-per-min 0 --max-concurrent 0 || return 1
    PROXY_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LW_WEB_OUT")
    # shellcheck disable=SC2034 # read by the scripts that call us
    DENIED_PORT=$SITE_PORT
    if [ -z "$TARGET_PORT" ] || [ -z "$SITE_PORT" ] || [ -z "$PROXY_PORT" ]; then
        lw_warn "could not read the servers' ports"
        return 1
    fi
    lw_info "target :$TARGET_PORT, lwproxy :$PROXY_PORT, site :$SITE_PORT"
}

# lw_web_start_auth_proxy: a second lwproxy that requires a token; sets
# AUTH_PROXY_PORT and TOKEN (minted by `lwproxy token` with a fresh secret).
lw_web_start_auth_proxy() {
    local secret
    secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    TOKEN=$(JWT_SECRET=$secret "$LW_ROOT/target/release/lwproxy" token --sub browser-test --ttl 30m) || return 1
    JWT_SECRET=$secret lw_web_spawn lwproxy-auth "listening on" "$LW_ROOT/target/release/lwproxy" \
        --listen 127.0.0.1:0 --allow "127.0.0.1/32:$TARGET_PORT" --ports "$TARGET_PORT" \
        --bytes-per-min 0 --conns-per-min 0 --max-concurrent 0 || return 1
    # shellcheck disable=SC2034 # read by the scripts that call us
    AUTH_PROXY_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LW_WEB_OUT")
    [ -n "$AUTH_PROXY_PORT" ] && [ -n "$TOKEN" ]
}

lw_web_stop() {
    local pid
    for pid in "${LW_WEB_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${LW_WEB_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    LW_WEB_PIDS=()
    [ -z "$LW_WEB_TMP" ] || rm -rf "$LW_WEB_TMP"
}
