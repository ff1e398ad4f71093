# shellcheck shell=bash
# e2e scenario "pkgfresh" (tools/test/e2e.sh pkgfresh): index
# rollback refused also after a reboot, a command conflict across two signed
# repositories, an upgrade that renames a command, lwpkg-index refusing two
# packages with one command, and stalled/trickling servers ending
# `lwpkg update` within the (small) limits of /etc/lwpkg/lwpkg.conf.

# fresh_pkg DIR NAME VERSION BIN TEXT: a package whose command BIN prints TEXT.
fresh_pkg() {
    local dir=$1 name=$2 version=$3 bin=$4 text=$5
    mkdir -p "$dir"
    printf '#!/bin/sh\necho "%s"\n' "$text" >"$dir/$name-$version"
    printf '{"name":"%s","version":"%s","arch":"x86_64","file":"%s","bin":"%s"}\n' \
        "$name" "$version" "$name-$version" "$bin" >"$dir/$name-$version.pkg.json"
}

# fresh_registries: repo-fresh (tool 2.0; the index of tool 1.0, with a lower
# serial, kept aside in $E2E_TMP/fresh-v1), repo-ca and repo-cb (a and b, both
# providing the command "clash"), repo-rn1/repo-rn2 (x 1.0 with command x,
# x 2.0 with command x2). All signed with the e2e test key.
fresh_registries() {
    local indexer=$LW_ROOT/target/release/lwpkg-index key=$E2E_TMP/keys/test.key
    e2e_registries
    rm -rf "$WWW"/repo-fresh "$WWW"/repo-ca "$WWW"/repo-cb "$WWW"/repo-rn1 "$WWW"/repo-rn2 "$E2E_TMP/fresh-v1"
    fresh_pkg "$WWW/repo-fresh" tool 1.0 tool "tool 1.0"
    "$indexer" build "$WWW/repo-fresh" --sign "$key" >/dev/null
    mkdir -p "$E2E_TMP/fresh-v1"
    cp "$WWW/repo-fresh/index.json" "$WWW/repo-fresh/index.json.sig" "$E2E_TMP/fresh-v1/"
    rm "$WWW/repo-fresh/tool-1.0.pkg.json"
    fresh_pkg "$WWW/repo-fresh" tool 2.0 tool "tool 2.0"
    "$indexer" build "$WWW/repo-fresh" --sign "$key" >/dev/null
    fresh_pkg "$WWW/repo-ca" a 1.0 clash "clash from a"
    fresh_pkg "$WWW/repo-cb" b 1.0 clash "clash from b"
    fresh_pkg "$WWW/repo-rn1" x 1.0 x "x 1.0"
    fresh_pkg "$WWW/repo-rn2" x 2.0 x2 "x 2.0"
    local d
    for d in repo-ca repo-cb repo-rn1 repo-rn2; do
        "$indexer" build "$WWW/$d" --sign "$key" >/dev/null
    done
    # Both in one registry: the toolchain refuses to build it.
    mkdir -p "$E2E_TMP/both"
    cp "$WWW"/repo-ca/a-1.0* "$WWW"/repo-cb/b-1.0* "$E2E_TMP/both/"
    if "$indexer" build "$E2E_TMP/both" >"$E2E_TMP/both.out" 2>&1; then
        echo "built" >>"$E2E_TMP/both.out"
    fi
}

scenario_pkgfresh() {
    local rc=0
    fresh_registries
    rm -rf "$STORE" && mkdir -p "$STORE"
    guest_script fresh1 180 <<'EOF' || true
. /mnt/host/pkg-env.sh
repo() { echo "http://127.0.0.1:$HTTP_PORT/$1/"; }
repo repo-ca >/etc/lwpkg/repositories; repo repo-cb >>/etc/lwpkg/repositories
lwpkg update >/dev/null; echo "update-ab=$?"
lwpkg install a b 2>&1; echo "install-ab=$?"
leftovers | sed 's/^/ab-/'
repo repo-rn1 >/etc/lwpkg/repositories
lwpkg update >/dev/null && lwpkg install x >/dev/null; echo "install-x=$?"
repo repo-rn2 >/etc/lwpkg/repositories
lwpkg update >/dev/null && lwpkg upgrade; echo "upgrade-x=$?"
x2; [ -e /usr/local/bin/x ] || [ -L /usr/local/bin/x ] || echo "x-link-gone"
lwpkg remove x >/dev/null
use_repo repo-fresh
lwpkg update; echo "update-fresh=$?"
lwpkg install tool >/dev/null; echo "install-tool=$?"
tool
lwsync save >/dev/null; echo "save=$?"
EOF
    # The same URL now serves the older, validly signed index.
    cp "$E2E_TMP/fresh-v1/index.json" "$E2E_TMP/fresh-v1/index.json.sig" "$WWW/repo-fresh/"
    guest_script fresh2 180 <<'EOF' || true
. /mnt/host/pkg-env.sh
repo() { echo "http://127.0.0.1:$HTTP_PORT/$1/"; }
use_repo repo-fresh
lwpkg update 2>&1; echo "rollback-update=$?"
lwpkg upgrade >/dev/null 2>&1
echo "after: $(tool)"
printf 'idle_timeout = 2\nmin_speed = 1024\nspeed_window = 3\n' >/etc/lwpkg/lwpkg.conf
repo hold >/etc/lwpkg/repositories
t0=$(date +%s); lwpkg update 2>&1; echo "hold-update=$? took=$(($(date +%s) - t0))"
repo trickle >/etc/lwpkg/repositories
t0=$(date +%s); lwpkg update 2>&1; echo "trickle-update=$? took=$(($(date +%s) - t0))"
EOF
    local o=$E2E_TMP/fresh1.out o2=$E2E_TMP/fresh2.out
    if grep -q '^update-ab=0' "$o" && grep -q 'conflict: a and b both provide the command clash' "$o" &&
        grep -q '^install-ab=1' "$o" && ! grep -q '^ab-' "$o" && grep -q 'a and b both provide the command clash' "$E2E_TMP/both.out" &&
        ! grep -q '^built' "$E2E_TMP/both.out"; then
        pass "lwpkg: two packages of two signed repositories claiming one command: refused before anything changes, both named; lwpkg-index refuses such an index"
    else
        cat "$E2E_TMP/both.out" >&2
        fail "lwpkg: two packages of two signed repositories claiming one command: refused before anything changes, both named; lwpkg-index refuses such an index" fresh1
        rc=1
    fi
    if grep -q '^install-x=0' "$o" && grep -q '^upgrade-x=0' "$o" && grep -q '^x 2.0' "$o" && grep -q '^x-link-gone' "$o"; then
        pass "lwpkg: an upgrade that renames the command (x -> x2) removes the old link"
    else
        fail "lwpkg: an upgrade that renames the command (x -> x2) removes the old link" fresh1
        rc=1
    fi
    if grep -q '^install-tool=0' "$o" && grep -q '^tool 2.0' "$o" && grep -q '^save=0' "$o" &&
        grep -q "^rollback-update=1" "$o2" && grep -q "repo-fresh.*lower than serial" "$o2" && grep -q '^after: tool 2.0' "$o2"; then
        pass "lwpkg: after a reboot, the same URL serving an older signed index is refused (names the serials); tool 2.0 stays"
    else
        fail "lwpkg: after a reboot, the same URL serving an older signed index is refused (names the serials); tool 2.0 stays" fresh2
        rc=1
    fi
    # Limits from lwpkg.conf: 2 s without data, 1 KiB/s over 3 s.
    if grep -q '/hold/index.json: nothing received .*idle_timeout = 2 s' "$o2" && grep -Eq '^hold-update=1 took=[2-5]$' "$o2" &&
        grep -q '/trickle/index.json: transfer too slow.*min_speed = 1024' "$o2" && grep -Eq '^trickle-update=1 took=[3-6]$' "$o2"; then
        pass "lwpkg: a stalled server and a 1 byte/s body end lwpkg update with an error naming the URL and the limit, within the limits of lwpkg.conf"
    else
        fail "lwpkg: a stalled server and a 1 byte/s body end lwpkg update with an error naming the URL and the limit, within the limits of lwpkg.conf" fresh2
        rc=1
    fi
    return "$rc"
}
