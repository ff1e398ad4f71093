# shellcheck shell=bash
# e2e scenario "boot" (tools/test/e2e.sh boot): the guest boots with its devices, run -- passes status and stdin, run --auth.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

scenario_boot() {
    local rc=0 r=0
    # shellcheck disable=SC2016 # $PATH is the guest's
    guest boot 60 -- 'test -c /dev/lwnet && test -c /dev/lwstore && echo PATH=$PATH && exit 7' || r=$?
    if [ "$r" = 7 ] && out_has boot "PATH=/usr/local/bin"; then
        pass "boot: guest boots with /dev/lwnet and /dev/lwstore; run -- passes the exit status"
    else
        fail "boot: guest boots with /dev/lwnet and /dev/lwstore; run -- passes the exit status" boot
        rc=1
    fi
    r=0
    printf 'line one\nline two\n' | LW_SESSION=$E2E_TMP/session-stdin "$LW_ROOT/linux-wasm.sh" run \
        --no-build --store "$STORE" --timeout 60 -- 'wc -l' >"$E2E_TMP/stdin.out" 2>"$E2E_TMP/stdin.err" || r=$?
    if [ "$r" = 0 ] && [ "$(tr -d " \r" <"$E2E_TMP/stdin.out")" = 2 ]; then
        pass "boot: run -- gives the command its standard input"
    else
        fail "boot: run -- gives the command its standard input" stdin
        rc=1
    fi
    r=0
    # shellcheck disable=SC2016 # $DEMO_PORT is the guest's
    guest auth 60 --auth -- 'printf "GET / HTTP/1.0\r\n\r\n" | lwtcp 127.0.0.1 $DEMO_PORT' || r=$?
    if [ "$r" = 0 ] && out_has auth "lwnet demo page" && grep -q 'identity.*lwnet-run-' "$E2E_TMP/session-auth/lwproxy.log"; then
        pass "boot: run --auth: lwproxy checks tokens, lwhost presents one (audit shows its identity), the page loads"
    else
        fail "boot: run --auth: lwproxy checks tokens, lwhost presents one (audit shows its identity), the page loads" auth
        rc=1
    fi
    return "$rc"
}
