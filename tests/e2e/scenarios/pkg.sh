# shellcheck shell=bash
# e2e scenario "pkg" (tools/test/e2e.sh pkg): lwpkg update/install (with a dependency)/list/remove; tampered package and index refused.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

# pkg_refused REPO STEP: in the run "pkg", lwpkg failed at STEP (update: the
# index; install: a package) of repository REPO, and nothing of it is installed.
pkg_refused() {
    if [ "$2" = update ]; then
        out_has pkg "update-$1=" && ! out_has pkg "update-$1=0"
    else
        out_has pkg "update-$1=0"
    fi && out_has pkg "install-$1=" && ! out_has pkg "install-$1=0" && ! grep -q "^$1-" "$E2E_TMP/pkg.out"
}

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
    # All or nothing: for a tampered package with a dependency, the verified
    # dependency must not be installed either.
    pkg_refused badindex update
    verdict $? pkg "lwpkg: an index whose signature does not match is refused, nothing installed" || rc=1
    pkg_refused badleaf install
    verdict $? pkg "lwpkg: a package whose sha256 does not match is refused, nothing installed" || rc=1
    pkg_refused badpkg install
    verdict $? pkg "lwpkg: a tampered package that has a dependency is refused; nothing (nor its dependency) is installed" || rc=1
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
