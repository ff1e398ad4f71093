# shellcheck shell=bash
# Starts the loopback pieces the browser test and benchmark need: the target
# HTTP server, the REAL lwproxy (release build), the COOP/COEP site server.
# Source after tools/lib.sh; call lw_web_stop from an EXIT trap.

LW_WEB_PIDS=()
LW_WEB_TMP=""

# lw_web_keep: records the process tools/lib.sh's lw_start* just started.
lw_web_keep() { LW_WEB_PIDS+=("$LW_STARTED"); }

# lw_web_start: sets WEB_WASM, TARGET_PORT, PROXY_PORT, SITE_PORT, DENIED_PORT, MARKER.
lw_web_start() {
    LW_WEB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lwnet-web.XXXXXX")
    WEB_WASM=$(bash "$LW_ROOT/host/web/build.sh" build) || return 1
    # LW_WEB_REUSE_PROXY=1 (development only) reuses an existing build
    # instead of waiting for cargo's lock while others build.
    if [ -z "${LW_WEB_REUSE_PROXY:-}" ] || [ ! -x "$LW_ROOT/target/release/lwproxy" ]; then
        lw_info "building lwproxy (release)"
        lw_build_host >&2 || return 1
    fi
    MARKER="lwnet-$RANDOM$RANDOM"
    mkdir -p "$LW_WEB_TMP/empty"
    lw_start_servers "$LW_WEB_TMP/target.log" files --marker "$MARKER" --root "$LW_WEB_TMP/empty" --lifetime 0 || return 1
    lw_web_keep
    TARGET_PORT=${LW_PORTS[0]}
    # LW_WEB_SITE=DIR: an assembled site/ to serve at /site/ as well.
    local web=$LW_ROOT/host/web
    lw_start_servers "$LW_WEB_TMP/site.log" site --lifetime 0 --route "/lwnet/js/=$web/js" \
        --route "/lwnet/wasm/=$WEB_WASM" --route "/test/=$web/test" ${LW_WEB_SITE:+--route "/site/=$LW_WEB_SITE"} || return 1
    lw_web_keep
    SITE_PORT=${LW_PORTS[0]}
    # The target is admitted explicitly (loopback is denied by default);
    # the site server's port is not, so opening it is a policy denial.
    lw_start_lwproxy "$LW_WEB_TMP/lwproxy.log" \
        --listen 127.0.0.1:0 --no-auth --allow "127.0.0.1/32:$TARGET_PORT" --ports "$TARGET_PORT" \
        --bytes-per-min 0 --conns-per-min 0 --max-concurrent 0 || return 1
    lw_web_keep
    PROXY_PORT=$LW_PROXY_PORT
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
    JWT_SECRET=$secret lw_start_lwproxy "$LW_WEB_TMP/lwproxy-auth.log" \
        --listen 127.0.0.1:0 --allow "127.0.0.1/32:$TARGET_PORT" --ports "$TARGET_PORT" \
        --bytes-per-min 0 --conns-per-min 0 --max-concurrent 0 || return 1
    lw_web_keep
    # shellcheck disable=SC2034 # read by the scripts that call us
    AUTH_PROXY_PORT=$LW_PROXY_PORT
    [ -n "$AUTH_PROXY_PORT" ] && [ -n "$TOKEN" ]
}

lw_web_stop() {
    local pid
    for pid in "${LW_WEB_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${LW_WEB_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    LW_WEB_PIDS=()
    [ -z "$LW_WEB_TMP" ] || rm -rf "$LW_WEB_TMP"
}
