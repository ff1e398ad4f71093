# shellcheck shell=bash
# e2e scenario "sync" (tools/test/e2e.sh sync): lwsync save, power off, new boot; kill -9 of lwhost during a save.
# Sourced by tools/test/e2e.sh after tests/e2e/lib.sh, whose helpers it uses.

# The guest's view of /home, /root and /opt: type, mode, size, sha256, link target.
e2e_manifest_script() {
    cat >"$SHARE/manifest.sh" <<'EOF'
manifest() {
    find /home /root /opt | LC_ALL=C sort | while IFS= read -r f; do
        if [ -L "$f" ]; then echo "L $f -> $(readlink "$f")"
        elif [ -d "$f" ]; then echo "D $f $(stat -c %a "$f")"
        else echo "F $f $(stat -c '%a %s' "$f") $(sha256sum <"$f" | cut -d' ' -f1)"; fi
    done
}
EOF
}

scenario_sync() {
    local rc=0
    e2e_registries
    e2e_manifest_script
    rm -rf "$STORE" && mkdir -p "$STORE"
    guest_script sync1 180 <<'EOF' || true
. /mnt/host/pkg-env.sh
. /mnt/host/manifest.sh
mkdir -p /home/alice/docs /home/alice/empty /root/empty-dir /opt/data
head -c 4194304 /dev/urandom >/home/alice/big.bin
echo "only for root" >/root/secret && chmod 600 /root/secret
ln -s ../big.bin /home/alice/docs/link-to-big
ln -s /root/secret /home/alice/abs-link
printf 'line 1\nline 2\n' >/opt/data/note.txt
use_repo repo-good
lwpkg update >/dev/null && lwpkg install greet; echo "install=$?"
lwsync save; echo "save=$?"
manifest >/mnt/host/out/manifest1
EOF
    guest_script sync2 180 <<'EOF' || true
. /mnt/host/manifest.sh
manifest >/mnt/host/out/manifest2
greet after-reboot; echo "pkg-run=$?"
EOF
    if out_has sync1 "save=0" && [ -s "$OUT/manifest1" ] && grep -q 'F /home/alice/big.bin 644 4194304' "$OUT/manifest1" &&
        grep -q '^F /root/secret 600 ' "$OUT/manifest1" && grep -q '^D /home/alice/empty ' "$OUT/manifest1" &&
        grep -q '^L /home/alice/docs/link-to-big -> ../big.bin' "$OUT/manifest1" && cmp -s "$OUT/manifest1" "$OUT/manifest2"; then
        pass "lwsync: save, power off, new boot: /home /root /opt back byte for byte (4 MiB file, symlinks, 0600, empty dirs)"
    else
        diff "$OUT/manifest1" "$OUT/manifest2" | head -n 20 >&2 || true
        fail "lwsync: save, power off, new boot: /home /root /opt back byte for byte (4 MiB file, symlinks, 0600, empty dirs)" sync2
        rc=1
    fi
    if out_has sync1 "install=0" && out_has sync2 "pkg-run=0" && out_has sync2 "greet: ok"; then
        pass "lwsync: a package installed before the save works after the new boot"
    else
        fail "lwsync: a package installed before the save works after the new boot" sync2
        rc=1
    fi

    # kill -9 of lwhost in the middle of a save: the save fails, and the next
    # boot restores the snapshot before it, complete.
    after_marker "$OUT/saving" 120 eval 'sleep 0.3; kill_in_session sync3 lwhost KILL'
    guest_script sync3 180 <<'EOF' || true
echo "changed after the first save" >/root/secret
mkdir -p /home/alice/new
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do head -c 2097152 /dev/urandom >/home/alice/new/f$i; done
touch /mnt/host/out/saving
lwsync save; echo "save=$?"
EOF
    wait "$AFTER_PID" || true
    guest_script sync4 180 <<'EOF' || true
. /mnt/host/manifest.sh
manifest >/mnt/host/out/manifest4
EOF
    if out_has sync3 "save=" && ! out_has sync3 "save=0" && cmp -s "$OUT/manifest1" "$OUT/manifest4"; then
        pass "failure: kill -9 of lwhost during lwsync save; the next boot restores the previous snapshot"
    else
        diff "$OUT/manifest1" "$OUT/manifest4" | head -n 20 >&2 || true
        fail "failure: kill -9 of lwhost during lwsync save; the next boot restores the previous snapshot" sync3
        show sync4
        rc=1
    fi
    return "$rc"
}
