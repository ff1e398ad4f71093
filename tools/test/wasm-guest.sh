#!/usr/bin/env bash
# Tier wasm, part guest: the shipped wasm32 binaries of lwtcp, lwpkg and
# lwsync (linux-wasm user programs) pass the static ABI check
# (tools/wasm-abi) and run under the loader (tools/guest-harness), which runs
# them as upstream's kernel and runtime do; their /dev/lwnet and /dev/lwstore
# are served by the real host shim (lwhost worker + main side) and a real
# lwproxy, against loopback servers started here. Modules that break the ABI
# are refused by both; a run that writes below its 8 KiB stack fails. Each
# check is recorded; each tool's stack high-water mark is printed.
# Check bodies are functions run through check(): shellcheck cannot see the calls.
# shellcheck disable=SC2317
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/../lib.sh"

lw_need_apt "${LW_APT_BASE[@]}"
lw_need_rust
mkdir -p "$LW_WORKSPACE"
if [ -z "${LW_RESULTS:-}" ]; then
    LW_RESULTS=$(mktemp "$LW_WORKSPACE/results.XXXXXX")
    export LW_RESULTS
fi
cd "$LW_ROOT"

work=$(mktemp -d "$LW_WORKSPACE/wasm-guest.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

lw_info "building the wasm32 guest tools, guest-harness, linux-wasm-abi, lwproxy and lwpkg-index"
if ! tools/build-guest.sh --target wasm32 \
    || ! cargo build --release -q -p guest-harness -p linux-wasm-abi -p lwproxy -p lwpkg-index; then
    lw_result fail "wasm-guest: build"
    exit 1
fi
lw_result pass "wasm-guest: build (sizes within limits)"

H=$LW_ROOT/target/release/guest-harness
W=$LW_ROOT/guest/target/wasm32-linux/wasm32-unknown-unknown/release
INDEX=$LW_ROOT/target/release/lwpkg-index
ABI=$LW_ROOT/target/release/linux-wasm-abi

# Ports nothing listens on: CLOSED (refused by the host), DENIED (refused by
# the proxy's policy), DEAD (where no proxy is).
CLOSED=$(lw_free_port) DENIED=$(lw_free_port) DEAD=$(lw_free_port)

# Loopback servers: static files (pages and the registry) over HTTP and over
# HTTPS with a certificate from a throwaway CA the proxy is told to trust, and
# an echo server that answers only after the client half-closes.
mkdir -p "$work/www"
lw_test_ca "$work/pki" || { lw_result fail "wasm-guest: test certificates"; exit 1; }
lw_start_servers "$work/http.log" files --root "$work/www" --cert "$work/pki/server.pem" --key "$work/pki/server.key" ||
    { lw_result fail "wasm-guest: http servers start"; exit 1; }
pids+=("$LW_STARTED")
HTTP=${LW_PORTS[0]} TLS=${LW_PORTS[1]}
lw_start_servers "$work/echo.log" echo || { lw_result fail "wasm-guest: echo server starts"; exit 1; }
pids+=("$LW_STARTED")
ECHO=${LW_PORTS[0]}
lw_start_lwproxy "$work/proxy.log" --listen 127.0.0.1:0 --no-auth --extra-ca "$work/pki/ca.pem" \
    --allow "127.0.0.1/32:$HTTP" --allow "127.0.0.1/32:$ECHO" --allow "127.0.0.1/32:$CLOSED" --allow "127.0.0.1/32:$TLS" \
    --ports "$HTTP,$ECHO,$CLOSED,$TLS" || { lw_result fail "wasm-guest: lwproxy starts"; exit 1; }
pids+=("$LW_STARTED")
PROXY=$LW_PROXY_PORT

# run_tool ROOT STORE [harness options] TOOL [ARGS...]: one guest run; output in $work/out, $work/err.
run_tool() {
    local root=$1 store=$2
    shift 2
    local opts=()
    while [ $# -gt 0 ] && [[ $1 == --* ]]; do opts+=("$1" "$2"); shift 2; done
    local tool=$1
    shift
    local rc=0
    timeout 120 "$H" --root "$root" --store "$store" --proxy "ws://127.0.0.1:$PROXY/" --report "${opts[@]}" \
        "$W/$tool.wasm" "$@" >"$work/out" 2>"$work/err" || rc=$?
    # The loader's report: stack high-water mark and the syscalls used.
    sed -n "s/^guest-harness: stack high-water mark \([0-9]*\) bytes.*/$tool \1/p" "$work/err" >>"$work/stack.log"
    sed -n "s/^guest-harness: syscall \(.*\): [0-9]*$/$tool \1/p" "$work/err" >>"$work/syscalls.log"
    sed -i '/^guest-harness: \(stack high-water\|syscall \)/d' "$work/err"
    return "$rc"
}

# expect_fail CODE TEXT: the last run exited CODE and said TEXT on stderr.
expect_fail() {
    local want=$1 text=$2 got=0
    shift 2
    "$@" || got=$?
    [ "$got" -eq "$want" ] && grep -q "$text" "$work/err"
}

rc=0
# check NAME CMD...: records pass/fail; on failure shows the last run's output.
check() {
    local name=$1
    shift
    if "$@"; then
        lw_result pass "wasm-guest: $name"
    else
        lw_result fail "wasm-guest: $name"
        { echo "--- stdout"; head -c 2000 "$work/out"; echo "--- stderr"; head -c 2000 "$work/err"; } >&2 || true
        rc=1
    fi
}

# ---- the ABI -------------------------------------------------------------------
for t in lwtcp lwpkg lwsync; do
    check "$t.wasm passes the static linux-wasm ABI check" "$ABI" "$W/$t.wasm"
done
# A module that breaks the ABI: no dylink.0, its own memory, memory.grow (as a
# plain wasm32-unknown-unknown build has).
python3 - "$work/plain.wasm" <<'PY'
import sys
def sec(i, b): return bytes([i, len(b)]) + b
m = b"\0asm\x01\0\0\0" + sec(1, b"\x01\x60\x00\x00") + sec(3, b"\x01\x00") + sec(5, b"\x01\x00\x01") \
    + sec(7, b"\x01\x06_start\x00\x00") + sec(10, b"\x01\x07\x00\x41\x01\x40\x00\x1a\x0b")
open(sys.argv[1], "wb").write(m)
PY
abi_refuses_plain() {
    local got=0
    "$ABI" "$work/plain.wasm" >"$work/out" 2>"$work/err" || got=$?
    [ "$got" -eq 1 ] && grep -q "first section is not the custom section dylink.0" "$work/err" \
        && grep -q "defines its own memory" "$work/err" && grep -q "memory.grow" "$work/err"
}
check "the ABI check refuses a plain module, naming each problem" abi_refuses_plain
loader_refuses_plain() {
    local got=0
    timeout 60 "$H" --root "$work/nowhere" --store "$work/nostore" "$work/plain.wasm" >"$work/out" 2>"$work/err" || got=$?
    [ "$got" -eq 126 ] && grep -q "not a linux-wasm user program: .*dylink.0" "$work/err"
}
check "the loader refuses a plain module (exit 126, the reason named)" loader_refuses_plain
# A conforming program that writes 16 KiB below its initial stack pointer,
# then exits: the canary region below the 8 KiB stack must catch it.
python3 - "$work/smash.wasm" <<'PY'
import sys
def leb(v):
    out = b""
    while True:
        b = v & 0x7f; v >>= 7
        if v == 0: return out + bytes([b])
        out += bytes([b | 0x80])
def sleb(v):
    out = b""
    while True:
        b = v & 0x7f; v >>= 7
        if (v == 0 and not b & 0x40) or (v == -1 and b & 0x40): return out + bytes([b])
        out += bytes([b | 0x80])
def name(s): return leb(len(s)) + s.encode()
def sec(i, b): return bytes([i]) + leb(len(b)) + b
meminfo = leb(16) + leb(2) + leb(0) + leb(0)
dylink = name("dylink.0") + b"\x01" + leb(len(meminfo)) + meminfo
types = b"\x02\x60\x00\x00\x60\x04\x7f\x7f\x7f\x7f\x01\x7f"
imports = leb(3) + name("env") + name("memory") + b"\x02\x03" + leb(1) + leb(65536) \
    + name("env") + name("__stack_pointer") + b"\x03\x7f\x01" \
    + name("env") + name("__wasm_syscall_1") + b"\x00\x01"
exports = leb(2) + name("_start") + b"\x00\x01" + name("__wasm_apply_data_relocs") + b"\x00\x02"
# _start: store 1 at __stack_pointer - 16384, then exit_group(0) (asm-generic 94).
start = b"\x00\x23\x00\x41" + sleb(16384) + b"\x6b\x41\x01\x36\x02\x00" \
    + b"\x41\x00\x41\x00\x41" + sleb(94) + b"\x41\x00\x10\x00\x1a\x0b"
code = leb(2) + leb(len(start)) + start + b"\x02\x00\x0b"
m = b"\0asm\x01\0\0\0" + sec(0, dylink) + sec(1, types) + sec(2, imports) + sec(3, b"\x02\x00\x00") \
    + sec(7, exports) + sec(10, code)
open(sys.argv[1], "wb").write(m)
PY
loader_catches_stack_overflow() {
    local got=0
    "$ABI" "$work/smash.wasm" >/dev/null || return 1
    timeout 60 "$H" --root "$work/nowhere" --store "$work/nostore" "$work/smash.wasm" >"$work/out" 2>"$work/err" || got=$?
    [ "$got" -ne 0 ] && grep -q "wrote below its stack" "$work/err"
}
check "the loader fails a run that writes below its 8 KiB stack" loader_catches_stack_overflow

demo_hello_runs() {
    "$ABI" "$W/hello.wasm" >/dev/null && run_tool "$work/nowhere" "$work/nostore" hello you \
        && grep -qx "Hello from an lwpkg package, running on Linux .* (wasm32), for you" "$work/out"
}
check "hello.wasm (the demo registry's wasm32 package) passes the check and runs" demo_hello_runs

# ---- lwtcp -------------------------------------------------------------------
printf '<h1>hello from loopback</h1>\n' >"$work/www/hello.html"
T=$work/tcp
mkdir -p "$T/root" "$T/store"

tcp_fetch_page() {
    printf 'GET /hello.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' | run_tool "$T/root" "$T/store" lwtcp 127.0.0.1 "$HTTP" \
        && grep -q '^HTTP/1.0 200' "$work/out" && grep -q 'hello from loopback' "$work/out"
}
check "lwtcp fetches a page through lwhost and lwproxy" tcp_fetch_page

tcp_tls_page() {
    printf 'GET /hello.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' | run_tool "$T/root" "$T/store" lwtcp --tls 127.0.0.1 "$TLS" \
        && grep -q '^HTTP/1.0 200' "$work/out" && grep -q 'hello from loopback' "$work/out"
}
check "lwtcp --tls fetches a page over TLS started at the proxy" tcp_tls_page
check "lwtcp --tls to a plain-text port exits 2" \
    expect_fail 2 "cannot connect" run_tool "$T/root" "$T/store" lwtcp --tls 127.0.0.1 "$HTTP"

tcp_half_close_binary() {
    head -c 1500000 /dev/urandom >"$work/in.bin"
    { printf 'echo:'; cat "$work/in.bin"; } >"$work/want.bin"
    run_tool "$T/root" "$T/store" lwtcp -N 127.0.0.1 "$ECHO" <"$work/in.bin" && cmp -s "$work/out" "$work/want.bin"
}
check "lwtcp -N half-closes; 1.5 MB binary round trip is exact" tcp_half_close_binary

check "lwtcp: policy denial exits 2 saying 'refused by policy'" \
    expect_fail 2 "refused by policy" run_tool "$T/root" "$T/store" lwtcp 127.0.0.1 "$DENIED"
check "lwtcp: closed port exits 2 saying 'connection refused'" \
    expect_fail 2 "connection refused" run_tool "$T/root" "$T/store" lwtcp 127.0.0.1 "$CLOSED"
check "lwtcp: usage error exits 1" expect_fail 1 "expected HOST and PORT" run_tool "$T/root" "$T/store" lwtcp 127.0.0.1
tcp_proxy_down() {
    local got=0
    timeout 60 "$H" --root "$T/root" --store "$T/store" --proxy "ws://127.0.0.1:$DEAD/" \
        "$W/lwtcp.wasm" -w 3 127.0.0.1 "$HTTP" </dev/null >"$work/out" 2>"$work/err" || got=$?
    [ "$got" -eq 2 ] && grep -q "cannot connect" "$work/err"
}
check "lwtcp: proxy down exits 2 with a reason" tcp_proxy_down

# ---- lwpkg -------------------------------------------------------------------
R=$work/www/repo
P=$work/pkg
mkdir -p "$R" "$P/root/etc/lwpkg/keys" "$P/store"
# wasm32 packages must be linux-wasm programs (lwpkg-index checks): the
# shipped binaries stand in for them.
cp "$W/lwtcp.wasm" "$R/hello-1.0.wasm"
cp "$W/lwsync.wasm" "$R/libgreet-2.0.wasm"
printf 'x86 only\n' >"$R/native-1.0.bin"
cat >"$R/hello.pkg.json" <<'JSON'
{"name": "hello", "version": "1.0", "arch": "wasm32", "file": "hello-1.0.wasm", "description": "says hello", "depends": ["libgreet"]}
JSON
cat >"$R/libgreet.pkg.json" <<'JSON'
{"name": "libgreet", "version": "2.0", "arch": "wasm32", "file": "libgreet-2.0.wasm", "description": "greetings"}
JSON
cat >"$R/native.pkg.json" <<'JSON'
{"name": "native", "version": "1.0", "arch": "x86_64", "file": "native-1.0.bin"}
JSON
index_refuses_plain_wasm32() {
    local d=$work/badrepo got=0
    mkdir -p "$d" && cp "$work/plain.wasm" "$d/app.wasm"
    printf '{"name": "app", "version": "1", "arch": "wasm32", "file": "app.wasm"}\n' >"$d/app.pkg.json"
    "$INDEX" build "$d" >"$work/out" 2>"$work/err" || got=$?
    [ "$got" -ne 0 ] && grep -q "app.wasm (arch wasm32) is not a linux-wasm user program" "$work/err" \
        && [ ! -e "$d/index.json" ]
}
check "lwpkg-index build refuses a wasm32 package that fails the ABI check" index_refuses_plain_wasm32
"$INDEX" keygen --out "$work/repo-key" >/dev/null
"$INDEX" build "$R" --sign "$work/repo-key.key" >/dev/null
cp "$work/repo-key.pub" "$P/root/etc/lwpkg/keys/test.pub"
printf '# test registry\nhttp://127.0.0.1:%s/repo\n' "$HTTP" >"$P/root/etc/lwpkg/repositories"

pkg_install() {
    run_tool "$P/root" "$P/store" lwpkg update && grep -q "2 packages for wasm32" "$work/out" \
        && run_tool "$P/root" "$P/store" lwpkg install hello \
        && cmp -s "$P/root/opt/packages/hello/1.0/hello" "$R/hello-1.0.wasm" \
        && cmp -s "$P/root/opt/packages/libgreet/2.0/libgreet" "$R/libgreet-2.0.wasm" \
        && [ "$(readlink "$P/root/usr/local/bin/hello")" = /opt/packages/hello/1.0/hello ] \
        && [ -x "$P/root/opt/packages/hello/1.0/hello" ] \
        && run_tool "$P/root" "$P/store" lwpkg list && grep -qx "hello 1.0" "$work/out" && grep -qx "libgreet 2.0" "$work/out"
}
check "lwpkg installs from a signed loopback registry (dependency first)" pkg_install
pkg_https_repository() {
    local r=$work/pkg-https
    mkdir -p "$r/etc/lwpkg/keys"
    cp "$work/repo-key.pub" "$r/etc/lwpkg/keys/test.pub"
    printf 'https://127.0.0.1:%s/repo\n' "$TLS" >"$r/etc/lwpkg/repositories"
    run_tool "$r" "$P/store" lwpkg update && run_tool "$r" "$P/store" lwpkg install libgreet \
        && cmp -s "$r/opt/packages/libgreet/2.0/libgreet" "$R/libgreet-2.0.wasm"
}
check "lwpkg installs from an https:// repository (TLS at the proxy)" pkg_https_repository
pkg_search_info() {
    run_tool "$P/root" "$P/store" lwpkg search greet && grep -q "libgreet 2.0 - greetings \[installed\]" "$work/out" \
        && run_tool "$P/root" "$P/store" lwpkg info hello && grep -q "depends: libgreet" "$work/out"
}
check "lwpkg search and info" pkg_search_info
pkg_remove() {
    expect_fail 1 "hello depends on it" run_tool "$P/root" "$P/store" lwpkg remove libgreet \
        && run_tool "$P/root" "$P/store" lwpkg remove hello libgreet \
        && [ -z "$(ls -A "$P/root/opt/packages")" ] && [ -z "$(ls -A "$P/root/usr/local/bin")" ]
}
check "lwpkg remove deletes exactly what install created" pkg_remove
check "lwpkg refuses a package built for another arch" \
    expect_fail 1 "built for x86_64" run_tool "$P/root" "$P/store" lwpkg install native

pkg_tampered_index() {
    cp "$R/index.json" "$work/index.good"
    sed -i 's/says hello/says HELLO/' "$R/index.json"
    local ok=0
    expect_fail 1 "does not match" run_tool "$P/root" "$P/store" lwpkg update || ok=1
    cp "$work/index.good" "$R/index.json"
    return "$ok"
}
check "lwpkg refuses a tampered index" pkg_tampered_index
pkg_bad_checksum() {
    cp "$R/hello-1.0.wasm" "$work/hello.good"
    python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 1; open(sys.argv[1], "wb").write(b)' \
        "$R/hello-1.0.wasm" # same size, other bytes
    local ok=0
    expect_fail 1 "checksum mismatch" run_tool "$P/root" "$P/store" lwpkg install hello || ok=1
    cp "$work/hello.good" "$R/hello-1.0.wasm"
    [ "$ok" -eq 0 ] && [ ! -e "$P/root/opt/packages/hello" ] && [ ! -e "$P/root/usr/local/bin/hello" ] \
        && [ -z "$(find "$P/root/opt/packages" -name '.tmp-*')" ]
}
check "lwpkg: bad checksum installs nothing and leaves nothing behind" pkg_bad_checksum
pkg_untrusted_key() {
    "$INDEX" keygen --out "$work/other" >/dev/null
    cp "$work/other.pub" "$P/root/etc/lwpkg/keys/test.pub"
    local ok=0
    expect_fail 1 "does not match" run_tool "$P/root" "$P/store" lwpkg update || ok=1
    cp "$work/repo-key.pub" "$P/root/etc/lwpkg/keys/test.pub"
    return "$ok"
}
check "lwpkg refuses an index signed by an untrusted key" pkg_untrusted_key

# ---- lwsync ------------------------------------------------------------------
S=$work/sync
mkdir -p "$S/a/home/user/docs" "$S/a/home/user/emptydir" "$S/a/root" "$S/store" "$S/b" "$S/c" "$S/empty-store"
printf 'my notes\n' >"$S/a/home/user/notes.txt"
head -c 3000000 /dev/urandom >"$S/a/home/user/docs/big.bin"
: >"$S/a/home/user/empty"
printf 'secret\n' >"$S/a/root/.secret"
chmod 600 "$S/a/root/.secret"
chmod 711 "$S/a/home/user/emptydir"
ln -s docs/big.bin "$S/a/home/user/link"
touch -d '2020-01-02 03:04:05' "$S/a/home/user/notes.txt"

# tree_listing DIR: path, type, mode, mtime (not for links), content hash / link target.
tree_listing() {
    (cd "$1" && find home root -printf '%p %y %m %T@ %l\n' | sort | while read -r p y m t l; do
        case $y in
            f) echo "$p f $m $t $(sha256sum <"$p" | cut -c1-16)" ;;
            l) echo "$p l $l" ;;
            *) echo "$p $y $m $t" ;;
        esac
    done)
}

sync_restore_empty() {
    run_tool "$S/c" "$S/empty-store" lwsync restore && [ ! -s "$work/out" ] && [ ! -s "$work/err" ] \
        && [ -z "$(ls -A "$S/c")" ]
}
check "lwsync restore with nothing saved is quiet and changes nothing" sync_restore_empty
sync_save_restore() {
    run_tool "$S/a" "$S/store" lwsync save && grep -q "saved 4 files, 5 directories, 1 links" "$work/out" \
        && run_tool "$S/b" "$S/store" lwsync restore \
        && [ "$(tree_listing "$S/a")" = "$(tree_listing "$S/b")" ]
}
check "lwsync saves and restores a tree (modes, mtimes, symlink, empty dir)" sync_save_restore
sync_idempotent() {
    run_tool "$S/b" "$S/store" lwsync restore && [ ! -s "$work/out" ] && [ "$(tree_listing "$S/a")" = "$(tree_listing "$S/b")" ]
}
check "lwsync restore run again is idempotent" sync_idempotent
# A chmod changes the inode's ctime: status cannot tell it from a content
# change that kept size and mtime (touch -r), so it says "modified", and
# save reads it again (2 changed) but sends only the new bytes.
sync_incremental() {
    printf 'changed\n' >>"$S/a/home/user/notes.txt" && chmod 640 "$S/a/root/.secret" \
        && rm "$S/a/home/user/empty" \
        && run_tool "$S/a" "$S/store" lwsync status \
        && grep -qx "modified /home/user/notes.txt" "$work/out" && grep -qx "modified /root/.secret" "$work/out" \
        && grep -qx "deleted  /home/user/empty" "$work/out" \
        && run_tool "$S/a" "$S/store" lwsync save && grep -q "2 changed, 1 KiB sent" "$work/out" \
        && run_tool "$S/a" "$S/store" lwsync status && grep -qx "no changes since the last save" "$work/out"
}
check "lwsync status and incremental save (only changed bytes sent)" sync_incremental
sync_quota() {
    local q=$S/quota a=$S/qa
    mkdir -p "$q" "$a/home/u" "$S/qb"
    printf 'small\n' >"$a/home/u/small"
    run_tool "$a" "$q" --quota 200000 lwsync save || return 1
    head -c 1000000 /dev/urandom >"$a/home/u/big"
    expect_fail 1 "full" run_tool "$a" "$q" --quota 200000 lwsync save || return 1
    run_tool "$S/qb" "$q" --quota 200000 lwsync restore && [ "$(cat "$S/qb/home/u/small")" = small ] && [ ! -e "$S/qb/home/u/big" ]
}
check "lwsync: a save over quota fails clearly and the previous snapshot stays" sync_quota

# ---- stack: worst-case inputs, then each tool's high-water mark ----------------
stack_deep_json() {
    # The deepest JSON the parser accepts (32 levels) inside a signed index.
    cp "$R/index.json" "$work/index.good" && cp "$R/index.json.sig" "$work/index.sig.good" || return 1
    python3 - "$R/index.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
deep = 0
for _ in range(31):
    deep = [deep]
doc["deep"] = deep
open(sys.argv[1], "w").write(json.dumps(doc))
PY
    "$INDEX" sign --key "$work/repo-key.key" "$R/index.json" >/dev/null || return 1
    local got=0
    run_tool "$P/root" "$P/store" lwpkg update || got=$?
    cp "$work/index.good" "$R/index.json" && cp "$work/index.sig.good" "$R/index.json.sig"
    # Parsed (accepted or refused with a message), never a crashed run.
    [ "$got" -lt 100 ]
}
check "lwpkg parses a signed index nested as deep as the parser allows" stack_deep_json
stack_long_paths() {
    # A deep tree with long names (a path of about 2 KiB) saved and restored.
    local a=$S/deep-a b=$S/deep-b st=$S/deep-store d i
    d=$a/home/u
    for ((i = 0; i < 30; i++)); do d+=/$(printf 'dir%02d-%055d' "$i" 0); done
    mkdir -p "$d" "$b" "$st" && printf 'deep\n' >"$d/file"
    run_tool "$a" "$st" lwsync save && run_tool "$b" "$st" lwsync restore \
        && [ "$(cat "${d/$a/$b}/file")" = deep ]
}
check "lwsync saves and restores a 30-level tree with ~2 KiB paths" stack_long_paths
# binfmt_wasm's user stack: two pages, no guard page. Every run above had
# exactly this (the loader fails a run that writes below it).
STACK_BUDGET=8192
stack_report() {
    local t max
    for t in lwtcp lwpkg lwsync; do
        max=$(awk -v t="$t" '$1 == t && $2 > m { m = $2 } END { print m + 0 }' "$work/stack.log")
        printf '  %-7s stack high-water mark %5d bytes of %d (over %d runs)\n' "$t" "$max" "$STACK_BUDGET" \
            "$(awk -v t="$t" '$1 == t' "$work/stack.log" | wc -l)"
        [ "$max" -gt 0 ] && [ "$max" -le "$STACK_BUDGET" ] || return 1
    done
    echo "  syscalls used (name, number):"
    awk '{ $1 = ""; print }' "$work/syscalls.log" | sort -u | sed 's/^ */    /'
}
check "lwtcp, lwpkg and lwsync stay within the 8 KiB stack on worst-case inputs" stack_report

exit $rc
