#!/usr/bin/env bash
# Assembles the guest's initramfs for the native (um) system: BusyBox (Debian's
# busybox-static), the guest tools, initramfs/init and a few files in /etc.
# The archive is rewritten only when its contents changed.
#
#   tools/initramfs.sh [--overlay] OUTPUT.cpio.gz GUEST-BIN-DIR [DEMO-KEY.pub]
#
# --overlay leaves out BusyBox and device nodes: an archive to append to
# another initramfs (the wasm target's, whose BusyBox is upstream's).
set -euo pipefail
# shellcheck source=tools/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

overlay=0
case "${1:-}" in
    -h | --help) echo "Usage: tools/initramfs.sh [--overlay] OUTPUT.cpio.gz GUEST-BIN-DIR [DEMO-KEY.pub]"; exit 0 ;;
    --overlay) overlay=1; shift ;;
esac
[ $# -ge 2 ] || { echo "Usage: tools/initramfs.sh [--overlay] OUTPUT.cpio.gz GUEST-BIN-DIR [DEMO-KEY.pub]" >&2; exit 2; }
out=$1
guest_bin=${2:?usage: tools/initramfs.sh OUTPUT.cpio.gz GUEST-BIN-DIR [DEMO-KEY.pub]}
demo_key=${3:-}

busybox=/bin/busybox
mkdir -p "$LW_BUILD"
root=$(mktemp -d "$LW_BUILD/initramfs-root.XXXXXX")
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc/lwpkg/keys,dev,proc,sys,tmp,run,mnt,root,home,opt,var/tmp}
chmod 700 "$root/root"
chmod 1777 "$root/tmp" "$root/var/tmp"

if [ "$overlay" = 0 ]; then
    # Debian's busybox-static installs a static /bin/busybox (the guest has no libc).
    [ -x "$busybox" ] || lw_need_apt busybox-static
    [ -x "$busybox" ] || lw_die "initramfs: $busybox missing after installing busybox-static"
    # BusyBox and one link per applet, where the applet expects to live.
    cp "$busybox" "$root/bin/busybox"
    "$busybox" --list-full | while read -r applet; do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
fi

install -m 0755 "$LW_ROOT/initramfs/init" "$root/init"

tools=()
for t in lwtcp lwpkg lwsync; do
    if [ -x "$guest_bin/$t" ]; then
        install -m 0755 "$guest_bin/$t" "$root/usr/bin/$t"
        tools+=("$t")
    fi
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$root/etc/profile" <<'EOF'
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PS1='lwnet:\w\$ '
EOF
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
printf 'lwnet\n' >"$root/etc/hostname"
if [ -n "$demo_key" ] && [ -f "$demo_key" ]; then
    install -m 0644 "$demo_key" "$root/etc/lwpkg/keys/demo.pub"
fi

# The console must exist before init runs (the kernel opens it for init's
# stdio); a cpio made by an unprivileged user cannot carry device nodes.
if [ "$overlay" = 1 ]; then
    : # the base archive has them
elif [ "$(id -u)" -eq 0 ]; then
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3
else
    lw_warn "initramfs: not root, so no /dev/console in the image (init output may be lost)"
fi

# Fixed timestamps: the same inputs give the same archive, so an unchanged
# build leaves it alone.
find "$root" -exec touch -h -d @0 {} +
tmp=$(mktemp "$out.XXXXXX")
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --owner=0:0 --reproducible --quiet) | gzip -n -6 >"$tmp"
if [ -f "$out" ] && cmp -s "$tmp" "$out"; then
    rm -f "$tmp"
    lw_info "initramfs: up to date ($out)"
else
    mv -f "$tmp" "$out"
    lw_info "initramfs: $out ($(du -k "$out" | cut -f1) KiB; busybox${tools[*]:+, ${tools[*]}})"
fi
