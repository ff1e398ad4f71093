# shellcheck shell=bash
# e2e scenario "sync_cases": lwsync's hard cases on the um target, each as a user meets it:
# save, power off, boot (init restores), compare. Sourced by tools/test/e2e.sh;
# uses the guest_script/pass/fail helpers of tests/e2e/lib.sh and a store of its own.

# store_object DIR KEY FILE: puts FILE's bytes under KEY in the native store
# at DIR as lwhost lays values out (host/src/store.rs: objects/SHA256(KEY),
# header "LWS1", key length u32 LE, key) - a snapshot written by someone else.
store_object() {
    python3 - "$1" "$2" "$3" <<'EOF'
import hashlib, os, struct, sys
d, key, src = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
os.makedirs(os.path.join(d, "objects"), exist_ok=True)
with open(src, "rb") as f:
    value = f.read()
with open(os.path.join(d, "objects", hashlib.sha256(key).hexdigest()), "wb") as f:
    f.write(b"LWS1" + struct.pack("<I", len(key)) + key + value)
EOF
}

# damage_chunk DIR CONTENT-FILE: flips the last byte of CONTENT-FILE's bytes
# where the store holds them: inside a pack (lwsync/pack/ID, chunks back to
# back) or as a chunk value of its own (older formats). Exactly one value
# must hold them.
damage_chunk() {
    python3 - "$1" "$2" <<'EOF'
import os, sys
d, src = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    want = f.read()
hits = []
for name in os.listdir(os.path.join(d, "objects")):
    p = os.path.join(d, "objects", name)
    with open(p, "rb") as f:
        data = f.read()
    at = data.find(want)
    if at >= 0 and b"lwsync/manifest" not in data[:64]:
        hits.append((p, at + len(want) - 1))
if len(hits) != 1:
    sys.exit(f"damage_chunk: {len(hits)} store values hold the bytes, expected 1")
p, at = hits[0]
with open(p, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0xFF]))
EOF
}

scenario_sync_cases() {
    local rc=0 STORE=$E2E_TMP/store-cases
    rm -rf "$STORE" && mkdir -p "$STORE"
    guest_script cases1 180 <<'EOF' || true
mkdir -p /home/u/dir /root/r
printf 'latin-1 name' >"/home/u/caf$(printf '\351')"
ln -s "$(printf '/x\377')" /home/u/odd-link
echo AAAA >/home/u/f && touch -d '2020-01-02 03:04:05' /home/u/ref && touch -r /home/u/ref /home/u/f
lwsync save; echo "save1=$?"
echo BBBB >/home/u/f && touch -r /home/u/ref /home/u/f
lwsync save; echo "save2=$?"
echo inside >/home/u/dir/x
echo "restored after the conflict" >/home/u/zz-after
echo "a damaged chunk" >/root/r/damaged
echo "#!/bin/sh" >/home/u/suid && chmod 6755 /home/u/suid
dd if=/dev/zero of=/home/u/sparse bs=1 count=0 seek=209715200 2>/dev/null
printf 'data' | dd of=/home/u/sparse bs=1 seek=1048576 conv=notrunc 2>/dev/null
# Two saves at once: the second waits for the first; both succeed.
lwsync save >/tmp/a 2>&1 & lwsync save >/tmp/b 2>&1; b=$?; wait $!; a=$?
echo "concurrent=$a,$b"
cat /tmp/a /tmp/b
EOF
    guest_script cases2 180 <<'EOF' || true
echo "name=$(cat "/home/u/caf$(printf '\351')")"
[ "$(readlink /home/u/odd-link)" = "$(printf '/x\377')" ] && echo "target-bytes-ok"
echo "f=$(cat /home/u/f)"
echo "mode=$(stat -c %a /home/u/suid)"
echo "sparse-size=$(stat -c %s /home/u/sparse) blocks=$(stat -c %b /home/u/sparse)"
echo "sparse-data=$(dd if=/home/u/sparse bs=1 skip=1048576 count=4 2>/dev/null)"
# The first save after a boot reads nothing (restore left the local record).
lwsync save; echo "save-after-boot=$?"
# A saved directory replaced by a link before a restore: reported, skipped,
# nothing written through the link, the rest restored, exit 2.
mkdir -p /tmp/outside && rm -rf /home/u/dir && ln -s /tmp/outside /home/u/dir && rm /home/u/zz-after
lwsync restore; echo "restore=$?"
echo "outside=$(ls -A /tmp/outside | wc -l)"
echo "after=$(cat /home/u/zz-after)"
EOF
    out_has cases1 "save1=0" && out_has cases1 "save2=0" && out_has cases2 "name=latin-1 name" &&
        out_has cases2 "target-bytes-ok"
    verdict $? cases2 "lwsync: a name and a link target that are not UTF-8 are saved and come back exactly" || rc=1
    out_has cases1 ": 1 changed, " && out_has cases2 "f=BBBB"
    verdict $? cases2 "lwsync: a change hidden by touch -r (same size and mtime) is saved (ctime)" || rc=1
    out_has cases2 "sparse-size=209715200" && grep -Eq 'blocks=([0-9]{1,3}|[0-9]{4})$' "$E2E_TMP/cases2.out" &&
        out_has cases2 "sparse-data=data"
    verdict $? cases2 "lwsync: a 200 MiB sparse file comes back with its holes (a few blocks allocated)" || rc=1
    out_has cases2 "mode=755"
    verdict $? cases2 "lwsync: setuid/setgid bits are not restored" || rc=1
    out_has cases2 "0 changed, 0 KiB sent" && out_has cases2 "save-after-boot=0"
    verdict $? cases2 "lwsync: the first save after a boot reads nothing unchanged (local record of the restore)" || rc=1
    out_has cases2 "restore=2" && out_has cases2 "outside=0" && out_has cases2 "after=restored after the conflict" &&
        grep -q "not restored: /home/u/dir" "$E2E_TMP/cases2.err" "$E2E_TMP/cases2.out"
    verdict $? cases2 "lwsync: a directory replaced by a link is reported and skipped, the rest restored, exit 2" || rc=1
    out_has cases1 "concurrent=0,0" && out_has cases1 "waiting for it to finish" && out_has cases2 "f=BBBB"
    verdict $? cases1 "lwsync: two saves at once: one waits for the other (store lock), both succeed, the snapshot is whole" || rc=1

    # A damaged chunk: that one file is skipped with a message at boot, the rest restored.
    printf 'a damaged chunk\n' >"$E2E_TMP/damaged"
    damage_chunk "$STORE" "$E2E_TMP/damaged"
    guest_script cases3 120 <<'EOF' || true
[ -e /root/r/damaged ] || echo "damaged-absent"
echo "f=$(cat /home/u/f)"
# The boot's restore reports on the console; ask again to read the message.
lwsync restore; echo "restore=$?"
EOF
    out_has cases3 "damaged-absent" && out_has cases3 "f=BBBB" && out_has cases3 "restore=2" &&
        grep -q "not restored: /root/r/damaged: chunk .* damaged" "$E2E_TMP/cases3.out" "$E2E_TMP/cases3.err"
    verdict $? cases3 "lwsync: a damaged chunk skips that file with a message naming it; the rest is restored" || rc=1

    # A manifest written by someone else: `root /`, entries outside the
    # configured roots, entries below link entries, a packed chunk said to
    # lie past its pack's end. Restore at boot writes nothing outside /home
    # /root /opt, skips the file whose chunk is out of range, and restores
    # the one read from the middle of the same pack.
    local c p1 p2 hostile=$E2E_TMP/hostile-manifest
    printf 'owned!!\n' >"$E2E_TMP/owned"
    c=$(sha256sum <"$E2E_TMP/owned" | cut -d' ' -f1)
    p1=$(printf 'packed!\n' | sha256sum | cut -d' ' -f1)
    p2=$(printf 'far-out\n' | sha256sum | cut -d' ' -f1)
    printf 'xyzpacked!\n' >"$E2E_TMP/pack"
    rm -rf "$STORE" && mkdir -p "$STORE"
    {
        printf 'lwsync 3\nroot /\np 0 %s\nc %s 0 3 8\nc %s 0 8 8\n' "$c" "$p1" "$p2"
        printf 'f 644 1 0 8 /root/packed %s\nf 644 1 0 8 /root/far %s\n' "$p1" "$p2"
        printf 'f 644 1 0 8 /etc/evil %s\nf 644 1 0 8 /etc/passwd %s\n' "$c" "$c"
        printf 'd 755 1 0 /home\nl 777 1 0 /home/l /etc\nf 644 1 0 8 /home/l/group %s\n' "$c"
        printf 'd 755 1 0 /root\nl 777 1 0 /root/t ../tmp\nf 4755 1 0 8 /root/t/planted %s\n' "$c"
        printf 'f 644 1 0 8 /root/ok %s\n' "$c"
    } >"$hostile"
    store_object "$STORE" lwsync/manifest "$hostile"
    store_object "$STORE" "lwsync/chunk/$c" "$E2E_TMP/owned"
    store_object "$STORE" "lwsync/pack/$c" "$E2E_TMP/pack"
    guest_script cases4 120 <<'EOF' || true
[ -e /etc/evil ] || echo "no-etc-evil"
grep -q owned /etc/passwd /etc/group || echo "etc-untouched"
[ -e /tmp/planted ] || echo "no-tmp-planted"
echo "ok=$(cat /root/ok)"
echo "packed=$(cat /root/packed)"
[ -e /root/far ] || echo "no-far"
# The boot's restore reports on the console; ask again to read the message.
lwsync restore; echo "restore=$?"
EOF
    out_has cases4 "no-etc-evil" && out_has cases4 "etc-untouched" && out_has cases4 "no-tmp-planted" &&
        out_has cases4 "ok=owned!!"
    verdict $? cases4 "lwsync: a hostile manifest (root /, entries below links) writes nothing outside the configured roots" || rc=1
    out_has cases4 "packed=packed!" && out_has cases4 "no-far" && out_has cases4 "restore=2" &&
        grep -q "not restored: /root/far: chunk .* ends before byte 16" "$E2E_TMP/cases4.out" "$E2E_TMP/cases4.err"
    verdict $? cases4 "lwsync: a packed chunk past its pack's end skips that file with a message; one inside the pack is restored" || rc=1

    # A snapshot in format 1 (the first lwsync's) restores unchanged.
    local v1=$E2E_TMP/v1-manifest
    rm -rf "$STORE" && mkdir -p "$STORE"
    printf 'lwsync 1\nroot /home\nd 755 1 0 /home\nd 700 1 0 /home/old\nf 600 1600000000 0 8 /home/old/n%%20ote %s\nl 777 1 0 /home/old/ln n%%20ote\n' \
        "$c" >"$v1"
    store_object "$STORE" lwsync/manifest "$v1"
    store_object "$STORE" "lwsync/chunk/$c" "$E2E_TMP/owned"
    guest_script cases5 120 <<'EOF' || true
echo "v1=$(cat '/home/old/n ote') $(stat -c '%a %Y' '/home/old/n ote') $(readlink /home/old/ln)"
EOF
    out_has cases5 "v1=owned!! 600 1600000000 n ote"
    verdict $? cases5 "lwsync: a snapshot in the first manifest format restores unchanged" || rc=1
    return "$rc"
}
