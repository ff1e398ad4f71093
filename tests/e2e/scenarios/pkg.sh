# shellcheck shell=bash
# e2e scenario "pkg" (tools/test/e2e.sh pkg): lwpkg update/install (with a dependency)/list/remove; tampered package and index refused.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

scenario_pkg() {
    local rc=0
    e2e_registries
    guest_script pkg 120 <<'EOF' || true
. /mnt/host/pkg-env.sh
use_repo repo-badindex
lwpkg update; echo "update-badindex=$?"
lwpkg install greet; echo "install-badindex=$?"
leftovers | sed 's/^/badindex-/'
use_repo repo-badleaf
lwpkg update; echo "update-badleaf=$?"
lwpkg install hello; echo "install-badleaf=$?"
leftovers | sed 's/^/badleaf-/'
use_repo repo-badpkg
lwpkg update; echo "update-badpkg=$?"
lwpkg install greet; echo "install-badpkg=$?"
leftovers | sed 's/^/badpkg-/'
lwpkg remove hello >/dev/null 2>&1
use_repo repo-good
lwpkg update; echo "update=$?"
lwpkg install greet; echo "install=$?"
greet e2e; echo "run=$?"
lwpkg list | sed 's/^/list: /'
lwpkg remove greet; echo "remove=$?"
[ -e /usr/local/bin/greet ] || [ -L /usr/local/bin/greet ] || echo "greet-link-gone"
[ -e /opt/packages/greet ] || echo "greet-dir-gone"
greet x >/dev/null 2>&1 || echo "greet-not-runnable"
hello >/dev/null && echo "hello-still-runs"
EOF
    if out_has pkg "update-badindex=" && ! out_has pkg "update-badindex=0" && ! out_has pkg "install-badindex=0" &&
        ! grep -q '^badindex-' "$E2E_TMP/pkg.out"; then
        pass "lwpkg: an index whose signature does not match is refused, nothing installed"
    else
        fail "lwpkg: an index whose signature does not match is refused, nothing installed" pkg
        rc=1
    fi
    if out_has pkg "update-badleaf=0" && out_has pkg "install-badleaf=" && ! out_has pkg "install-badleaf=0" &&
        ! grep -q '^badleaf-' "$E2E_TMP/pkg.out"; then
        pass "lwpkg: a package whose sha256 does not match is refused, nothing installed"
    else
        fail "lwpkg: a package whose sha256 does not match is refused, nothing installed" pkg
        rc=1
    fi
    # All or nothing: the verified dependency must not be installed either.
    if out_has pkg "update-badpkg=0" && out_has pkg "install-badpkg=" && ! out_has pkg "install-badpkg=0" &&
        ! grep -q '^badpkg-' "$E2E_TMP/pkg.out"; then
        pass "lwpkg: a tampered package that has a dependency is refused; nothing (nor its dependency) is installed"
    else
        fail "lwpkg: a tampered package that has a dependency is refused; nothing (nor its dependency) is installed" pkg
        rc=1
    fi
    if out_has pkg "update=0" && out_has pkg "install=0" && out_has pkg "run=0" &&
        out_has pkg "Hello from an lwpkg package" && out_has pkg "for e2e" && out_has pkg "greet: ok"; then
        pass "lwpkg: update + install of a package with a dependency from a signed loopback registry; it runs"
    else
        fail "lwpkg: update + install of a package with a dependency from a signed loopback registry; it runs" pkg
        rc=1
    fi
    if grep -q '^list: .*greet' "$E2E_TMP/pkg.out" && grep -q '^list: .*hello' "$E2E_TMP/pkg.out" &&
        out_has pkg "remove=0" && out_has pkg "greet-link-gone" && out_has pkg "greet-dir-gone" &&
        out_has pkg "greet-not-runnable" && out_has pkg "hello-still-runs"; then
        pass "lwpkg: list shows both; remove takes away exactly the package removed"
    else
        fail "lwpkg: list shows both; remove takes away exactly the package removed" pkg
        rc=1
    fi
    return "$rc"
}
