#!/usr/bin/env bash
# Boots the native (um) system with everything it talks to started beside it:
# lwproxy (loopback), lwhost (the guest's host side: proxy client and store),
# and a loopback web server with a demo page and the signed demo package
# registry. All of them are stopped when the guest stops, Ctrl-C included.
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

UM_INSTALL=$LW_INSTALL/um
BIN=$LW_ROOT/target/release

usage() {
    cat <<'USAGE'
Usage: ./linux-wasm.sh run [OPTIONS] [-- COMMAND...]

Boots the native (user-mode Linux) guest with lwproxy, lwhost and a loopback
demo web page + signed package registry beside it, building what is missing.
Without COMMAND: an interactive shell on this terminal ('exit' powers off).
With -- COMMAND: runs COMMAND in the guest (words joined by spaces and run by
/bin/sh, as ssh does), prints its output and exits with its status. Standard
input, when it is not a terminal, is given to COMMAND.

Options:
  --share DIR          mount host directory DIR at /mnt/host in the guest (hostfs)
  --allow CIDR[:PORT]  let the guest reach CIDR (on PORT) through the proxy; repeatable.
                       The proxy refuses every non-public address unless allowed here.
  --extra-ca FILE      a PEM CA the proxy trusts for `lwtcp --tls` (besides the system's)
  --auth               lwproxy requires a token, as deployed: a fresh HS256 secret is made
                       for this run and lwhost presents a token minted with it
                       (default: --no-auth, fine only because everything is on loopback)
  --store DIR          the guest's durable store (default: $LW_WORKSPACE/store)
  --mem SIZE           guest memory (default 256M)
  --timeout SECONDS    with COMMAND: stop the guest after SECONDS (exit status 124)
  --no-build           do not check the build first (it must exist)
  -h, --help           this text

The guest's store (what `lwsync save` keeps) survives between runs. Logs of the last run are in $LW_RUN/last/.
USAGE
}

store=$LW_WORKSPACE/store share='' auth=0 extra_ca='' mem=256M timeout='' build=1
allows=() command=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --share) [ $# -ge 2 ] || { echo "error: --share needs a directory" >&2; exit 2; }
            [ -d "$2" ] || { echo "error: --share: '$2' is not a directory" >&2; exit 2; }
            share=$(cd "$2" && pwd); shift 2 ;;
        --allow) [ $# -ge 2 ] || { echo "error: --allow needs CIDR[:PORT]" >&2; exit 2; }
            allows+=("$2"); shift 2 ;;
        --extra-ca) if [ $# -lt 2 ] || [ ! -f "$2" ]; then echo "error: --extra-ca needs a PEM file" >&2; exit 2; fi
            extra_ca=$(readlink -f "$2"); shift 2 ;;
        --auth) auth=1; shift ;;
        --store) [ $# -ge 2 ] || { echo "error: --store needs a directory" >&2; exit 2; }
            mkdir -p "$2" && store=$(cd "$2" && pwd); shift 2 ;;
        --mem) if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+[MG]$ ]]; then echo "error: --mem needs a size like 256M" >&2; exit 2; fi
            mem=$2; shift 2 ;;
        --timeout) if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then echo "error: --timeout needs whole seconds" >&2; exit 2; fi
            timeout=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --) shift; command=("$@"); [ ${#command[@]} -gt 0 ] || { echo "error: nothing after --" >&2; exit 2; }
            break ;;
        *) echo "error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case "$share" in *[[:space:],]*) echo "error: --share: the path may not contain spaces or commas" >&2; exit 2 ;; esac

if [ "$build" = 1 ]; then
    bash "$LW_ROOT/tools/build-um.sh" >&2
fi
for f in "$UM_INSTALL/linux" "$UM_INSTALL/initramfs.cpio.gz" "$BIN/lwproxy" "$BIN/lwhost"; do
    [ -e "$f" ] || lw_die "run: $f is missing; run 'LW_TARGET=um ./linux-wasm.sh build' first"
done

# --- the session: a directory the guest sees through hostfs ------------------
mkdir -p "$LW_RUN"
session=${LW_SESSION:-}
if [ -z "$session" ]; then
    session=$(mktemp -d "$LW_RUN/session.XXXXXX")
else
    mkdir -p "$session"
    session=$(cd "$session" && pwd)
fi
case "$session" in *[[:space:],]*) lw_die "run: the session path '$session' may not contain spaces or commas" ;; esac
# A unix socket path must fit in 108 bytes.
sockdir=$session
[ ${#sockdir} -lt 90 ] || sockdir=$(mktemp -d /tmp/lwnet.XXXXXX)
socket=$sockdir/lwhost.sock
mkdir -p "$store"

pids=() stty_saved=''
[ -t 0 ] && stty_saved=$(stty -g 2>/dev/null || true)
# shellcheck disable=SC2317 # reached through the traps below
cleanup() {
    local p
    trap - EXIT INT TERM
    [ -z "$stty_saved" ] || stty "$stty_saved" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    # Keep the last run's logs for a look after the fact.
    rm -rf "$LW_RUN/last"
    mkdir -p "$LW_RUN/last"
    cp "$session"/*.log "$LW_RUN/last/" 2>/dev/null || true
    [ "$sockdir" = "$session" ] || rm -rf "$sockdir"
    [ -n "${LW_SESSION:-}" ] || rm -rf "$session"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the loopback web server: demo page and demo registry --------------------
web_port=$(lw_free_port)
demo_root=$UM_INSTALL/demo
if [ -d "$demo_root" ]; then
    # Not waited for here: it comes up while lwproxy and lwhost start.
    lw_start "$session/web.log" python3 -u "$LW_ROOT/tools/servers.py" files --root "$demo_root" --port "$web_port" --lifetime 0
    pids+=("$LW_STARTED")
    echo "$LW_STARTED" >"$session/web.pid"
else
    lw_warn "run: no demo registry built ($demo_root); lwpkg has no default registry"
fi

# --- lwproxy -------------------------------------------------------------------
# One local user: no per-minute byte or connection budget, and as many
# concurrent connections as the shared region has slots (32).
proxy_args=(--listen 127.0.0.1:0 --allow "127.0.0.1/32:$web_port" --log-format text
    --bytes-per-min 0 --conns-per-min 0 --max-concurrent 32)
for a in "${allows[@]}"; do proxy_args+=(--allow "$a"); done
[ -z "$extra_ca" ] || proxy_args+=(--extra-ca "$extra_ca")
token=''
if [ "$auth" = 1 ]; then
    # The secret lives only in the environment of the two lwproxy commands.
    jwt_secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
    token=$(JWT_SECRET=$jwt_secret "$BIN/lwproxy" token --sub "lwnet-run-$$" --ttl 7d) ||
        lw_die "run: lwproxy could not mint a token"
else
    proxy_args+=(--no-auth)
    # Loud on purpose: an unauthenticated proxy is only acceptable on loopback.
    lw_warn "lwproxy runs WITHOUT AUTH on 127.0.0.1 for this local demo; never expose it (see README: deploying lwproxy)"
fi
JWT_SECRET=${jwt_secret:-} lw_start_lwproxy "$session/lwproxy.log" "${proxy_args[@]}" || proxy_up=no
pids+=("$LW_STARTED")
echo "$LW_STARTED" >"$session/lwproxy.pid"
[ -z "${proxy_up:-}" ] || lw_die "run: lwproxy did not start (its log above)"
proxy_port=$LW_PROXY_PORT

# --- lwhost --------------------------------------------------------------------
host_args=(--proxy "ws://127.0.0.1:$proxy_port" --store "$store" --socket "$socket")
# The token goes in lwhost's environment, not its command line (visible to every local user).
LWHOST_TOKEN=$token lw_start "$session/lwhost.log" "$BIN/lwhost" "${host_args[@]}"
pids+=("$LW_STARTED")
echo "$LW_STARTED" >"$session/lwhost.pid"
lw_await "$LW_STARTED" "$session/lwhost.log" "listening on" 10 >/dev/null || lw_die "run: lwhost did not start (its log above)"
# The web server started first and came up meanwhile (Python is the slowest).
[ ! -f "$session/web.pid" ] || lw_await "$(cat "$session/web.pid")" "$session/web.log" "^ready" 10 >/dev/null ||
    lw_die "run: the demo web server did not start (its log above)"

# --- the guest -------------------------------------------------------------------
cmdline=(mem="$mem" initrd="$UM_INSTALL/initramfs.cpio.gz" quiet loglevel=3
    lwhost="$socket" lwsession="$session" con=null)
[ -z "$share" ] || cmdline+=(lwshare="$share")
[ ! -d "$demo_root" ] || cmdline+=(lwrepo="http://127.0.0.1:$web_port/registry/" lwdemo="$web_port")
if [ ${#command[@]} -gt 0 ]; then
    # The kernel console goes to kernel.log (fd 3); the command's stdout and
    # stderr get guest ttys of their own (see initramfs/init).
    printf '%s\n' "${command[*]}" >"$session/command"
    cmdline+=("con0=null,fd:3" "con2=null,fd:2")
    if [ -t 0 ]; then
        cmdline+=("con1=fd:0,fd:1")
    else
        cat >"$session/stdin" 2>/dev/null || : >"$session/stdin"
        cmdline+=("con1=null,fd:1")
    fi
else
    [ -t 0 ] || lw_die "run: the interactive shell needs a terminal; use 'run -- COMMAND' from scripts"
    cmdline+=("con0=fd:0,fd:1")
fi

# user-mode Linux keeps guest memory in a file under TMPDIR: prefer shared memory.
umtmp=/dev/shm
[ -w "$umtmp" ] || umtmp=$session
# A background job's stdin would be /dev/null: hand it the terminal explicitly.
exec 4<&0
TMPDIR=$umtmp "$UM_INSTALL/linux" "${cmdline[@]}" <&4 4<&- 3>>"$session/kernel.log" &
uml=$!
pids=("$uml" "${pids[@]}")
echo "$uml" >"$session/linux.pid"
if [ -n "$timeout" ]; then
    (sleep "$timeout" && touch "$session/timed-out" && kill "$uml" 2>/dev/null) &
    pids+=($!)
fi
rc=0
wait "$uml" || rc=$?

if [ ${#command[@]} -eq 0 ]; then
    exit 0
fi
if [ -f "$session/timed-out" ]; then
    echo "run: the guest did not finish within $timeout s; stopped it" >&2
    exit 124
fi
if [ -f "$session/status" ]; then
    status=$(cat "$session/status")
    [[ $status =~ ^[0-9]+$ ]] || lw_die "run: the guest reported a malformed status '$status'"
    exit "$status"
fi
tail -n 20 "$session/kernel.log" >&2
echo "run: the guest stopped (linux exit $rc) without reporting the command's status" >&2
exit 125
