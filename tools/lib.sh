# shellcheck shell=bash
# Shared by linux-wasm.sh and the scripts under tools/: paths, messages,
# dependency installation and the test tally. Source it; do not run it.

LW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LW_WORKSPACE=${LW_WORKSPACE:-$LW_ROOT/workspace}
LW_SRC=${LW_SRC:-$LW_WORKSPACE/src}
LW_BUILD=${LW_BUILD:-$LW_WORKSPACE/build}
LW_INSTALL=${LW_INSTALL:-$LW_WORKSPACE/install}
LW_RUN=${LW_RUN:-$LW_WORKSPACE/run}
export LW_ROOT LW_WORKSPACE LW_SRC LW_BUILD LW_INSTALL LW_RUN
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export PATH="$HOME/.cargo/bin:$PATH"

lw_info() { printf '==> %s\n' "$*" >&2; }
lw_warn() { printf 'warning: %s\n' "$*" >&2; }
lw_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The machine's CPU time so far in clock ticks, "TOTAL STEAL", from the `cpu` line of
# /proc/stat (proc(5): user nice system idle iowait irq softirq steal; guest time is already
# in user and nice). Steal is time the hypervisor ran something else while this machine's
# virtual CPUs wanted to run: load average does not show it, and it slows every figure.
# (printf "%.0f": mawk prints numbers of 2^31 and more in %.6g form otherwise.)
lw_cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; printf "%.0f %.0f\n", t, $9; exit }' /proc/stat; }
# lw_steal_since "TOTAL STEAL" (from lw_cpu_ticks): "N% of CPU time stolen by the hypervisor".
lw_steal_since() {
    # shellcheck disable=SC2046,SC2086 # four numbers, split on purpose
    set -- $1 $(lw_cpu_ticks)
    awk -v t0="$1" -v s0="$2" -v t1="$3" -v s1="$4" 'BEGIN {
        printf "%.0f%% of CPU time stolen by the hypervisor", (t1 > t0) ? 100 * (s1 - s0) / (t1 - t0) : 0 }'
}

# Debian packages, by what needs them. Tiers install only their own.
# shellcheck disable=SC2034 # used by the scripts that source this file
{
    LW_APT_BASE=(build-essential clang-19 lld-19 llvm-19 libclang-19-dev pkg-config curl ca-certificates
        xz-utils cpio git python3 shellcheck)
    LW_APT_KERNEL=(linux-source-6.12 linux-source-6.1 bc flex bison libelf-dev libssl-dev perl)
    LW_APT_SYSTEM=(busybox-static socat)
    # lwproxy's tests: network namespaces with loopback aliases (unshare, ip); --shared-limits (redis-server).
    LW_APT_PROXY=(iproute2 util-linux redis-server)
    LW_APT_BROWSER=(chromium chromium-driver)
    LW_RUST_TARGETS=(wasm32-unknown-unknown wasm32-wasip1-threads x86_64-unknown-linux-musl)
    LW_RUST_COMPONENTS=(rust-src rustfmt clippy)
}

# lw_need_apt PKG...: installs the packages that are missing (as root, or via sudo).
lw_need_apt() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    lw_info "installing Debian packages: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    if [ ! -f "$LW_WORKSPACE/.apt-updated" ]; then
        "${sudo[@]}" apt-get update -q >&2 || lw_die "apt-get update failed; check the network or your apt sources"
        mkdir -p "$LW_WORKSPACE" && touch "$LW_WORKSPACE/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || lw_die "could not install: ${missing[*]}"
}

# lw_need_rust: the rustup targets and components the build uses.
lw_need_rust() {
    command -v rustup >/dev/null || lw_die "rustup not found: install Rust with rustup first"
    local have t
    have=$(rustup target list --installed)
    for t in "${LW_RUST_TARGETS[@]}"; do
        grep -qx "$t" <<<"$have" || { lw_info "adding Rust target $t"; rustup target add "$t" >&2; }
    done
    have=$(rustup component list --installed)
    for t in "${LW_RUST_COMPONENTS[@]}"; do
        grep -q "^$t" <<<"$have" || { lw_info "adding Rust component $t"; rustup component add "$t" >&2; }
    done
}

# lw_build_host: the release host binaries (lwhost, lwproxy, lwpkg-index) in one
# cargo call. Always the same package set: cargo unifies features across the
# packages of one call, so building lwproxy alone would rebuild its dependencies
# with other features (minutes on two cores) and throw away the shared build.
lw_build_host() {
    cargo build --release -q --manifest-path "$LW_ROOT/Cargo.toml" -p lwhost -p lwproxy -p lwpkg-index
}

# --- processes a script starts: lwproxy, test servers ------------------------
# Not to be run in $(...): the PID must stay in the calling shell, which stops
# the process (kill "$LW_STARTED") when it is done.

# lw_free_port: a TCP port on 127.0.0.1 that was free a moment ago (for a
# server that cannot be given port 0, or a port nothing listens on).
lw_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# lw_test_ca DIR: a throwaway CA (DIR/ca.pem) and a server certificate it
# signed for localhost and 127.0.0.1 (DIR/server.pem, DIR/server.key), valid
# for two days, for loopback TLS servers a test tells its clients to trust.
lw_test_ca() {
    local d=$1
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=lwnet-test-ca -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj /CN=localhost -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.pem
    ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; return 1; }
}

# lw_start LOG CMD...: starts CMD in the background, stdout and stderr to LOG;
# its PID in LW_STARTED.
lw_start() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    LW_STARTED=$!
}

# lw_await PID LOG PATTERN [SECONDS]: waits (30 s by default) until a line of
# LOG matches the extended regex PATTERN and prints it. Fails, showing the
# end of LOG, when the process PID exits first or the time runs out.
lw_await() {
    local pid=$1 log=$2 pattern=$3 limit=${4:-30} i
    for ((i = 0; i < limit * 20; i++)); do
        grep -m1 -E -- "$pattern" "$log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    grep -m1 -E -- "$pattern" "$log" 2>/dev/null && return 0
    if kill -0 "$pid" 2>/dev/null; then
        lw_warn "no line matching '$pattern' in $log within $limit s; its end:"
    else
        lw_warn "the process writing $log exited before a line matching '$pattern'; its end:"
    fi
    tail -n 20 "$log" >&2 || true
    return 1
}

# lw_start_lwproxy LOG ARG...: starts the release lwproxy with ARG (give
# --listen 127.0.0.1:0 for a free port) and waits for its "listening on
# ADDR:PORT" line; sets LW_STARTED (its PID) and LW_PROXY_PORT.
lw_start_lwproxy() {
    local log=$1 line
    shift
    lw_start "$log" "$LW_ROOT/target/release/lwproxy" "$@"
    line=$(lw_await "$LW_STARTED" "$log" 'listening on [^ ]+:[0-9]+') || return 1
    # shellcheck disable=SC2034 # read by the caller
    LW_PROXY_PORT=$(sed -E 's/.*listening on [^ ]+:([0-9]+).*/\1/' <<<"$line")
}

# lw_start_servers LOG MODE ARG...: starts tools/servers.py MODE ARG (the
# loopback HTTP, TLS, site and echo servers of the tests; see its --help) and
# waits for its "ready PORT..." line; sets LW_STARTED (its PID) and LW_PORTS
# (an array: the ports it printed).
lw_start_servers() {
    local log=$1 line
    shift
    lw_start "$log" python3 -u "$LW_ROOT/tools/servers.py" "$@"
    line=$(lw_await "$LW_STARTED" "$log" '^ready [0-9]') || return 1
    # shellcheck disable=SC2034 # read by the caller
    read -r -a LW_PORTS <<<"${line#ready }"
}

# --- test tally -----------------------------------------------------------
# Every check records one line "pass NAME" or "fail NAME" in $LW_RESULTS;
# linux-wasm.sh test prints the sum as "N passed, N failed".

lw_result() { # lw_result pass|fail NAME
    printf '%s %s\n' "$1" "$2" >>"${LW_RESULTS:?LW_RESULTS is not set}"
    if [ "$1" = pass ]; then printf 'ok   %s\n' "$2"; else printf 'FAIL %s\n' "$2"; fi
}

# lw_check NAME CMD...: runs CMD, records pass or fail; output goes to the log.
lw_check() {
    local name=$1
    shift
    if "$@"; then lw_result pass "$name"; else lw_result fail "$name"; return 1; fi
}

# lw_cargo_test NAME CARGO-ARGS...: runs cargo test and records each test.
lw_cargo_test() {
    local name=$1 log rc=0
    shift
    log=$(mktemp)
    cargo test "$@" 2>&1 | tee "$log" || rc=$?
    local passed failed
    read -r passed failed < <(awk '/^test result:/ {
            for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i - 1); if ($i ~ /^failed/) f += $(i - 1) }
        } END { print p + 0, f + 0 }' "$log")
    [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1 # a build failure is a failure
    local i
    for ((i = 0; i < passed; i++)); do printf 'pass %s\n' "$name" >>"$LW_RESULTS"; done
    for ((i = 0; i < failed; i++)); do printf 'fail %s\n' "$name" >>"$LW_RESULTS"; done
    rm -f "$log"
    printf '%s: %s passed, %s failed\n' "$name" "$passed" "$failed"
    [ "$rc" -eq 0 ]
}
