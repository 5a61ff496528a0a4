#!/usr/bin/env bash
# Builds the guest for the real-NFS tier: a Debian bookworm root file system
# (debootstrap minbase + the kernel NFS server and client tools), the stock
# Debian kernel and just the modules the tests need, packed as one
# uncompressed initramfs. Usage: tests/vm/image.sh OUT_DIR
# Writes OUT_DIR/vmlinuz and OUT_DIR/initrd.cpio. The caller caches OUT_DIR
# under a key made from this file's content.
set -euo pipefail

out=$1
work="$out.tmp"
rm -rf "$work"
mkdir -p "$work"

# The mirror apt already uses (deb822 .sources or one-line .list entries).
mirror() {
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '{print $2}' | grep -v -- '-security' | grep -m1 debian || true)
  if [ -z "$m" ]; then
    m=$(grep -hsE '^deb +(\[[^]]*\] +)?(http|https|file)://' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      grep -v -- '-security' | grep debian | head -n1 |
      sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' || true)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

root="$work/root"
echo "image: debootstrap bookworm from $(mirror)"
debootstrap --variant=minbase \
  --include=nfs-kernel-server,nfs-common,rpcbind,kmod,procps,iproute2,nftables,util-linux \
  bookworm "$root" "$(mirror)" > "$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log"; exit 1; }

# The kernel: the versioned package linux-image-amd64 points at. Stale
# package lists can name a kernel the mirror no longer has: update once then.
kernel_pkg() { apt-cache depends linux-image-amd64 2> /dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
fetch_kernel() { (cd "$work" && apt-get download -o APT::Sandbox::User=root "$1" > /dev/null); }
kpkg=$(kernel_pkg)
if [ -z "$kpkg" ] || ! fetch_kernel "$kpkg"; then
  apt-get update -qq
  kpkg=$(kernel_pkg)
  [ -n "$kpkg" ] || { echo "image: cannot resolve the kernel package" >&2; exit 1; }
  fetch_kernel "$kpkg"
fi
echo "image: kernel $kpkg"
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/kernel"
kver=${kpkg#linux-image-}
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"

# Only the modules the tests need, with their dependencies.
mods="virtio_pci 9p 9pnet_virtio nfsv3 nfsv4 nfsd lockd nf_tables nft_reject_inet nfnetlink"
kmods="$work/kernel/lib/modules/$kver"
depmod -b "$work/kernel" "$kver"
dst="$root/lib/modules/$kver"
mkdir -p "$dst"
cp "$kmods"/modules.order "$kmods"/modules.builtin "$kmods"/modules.builtin.modinfo "$dst"/
for m in $mods; do
  modprobe -d "$work/kernel" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" {print $2}' | sort -u | while read -r f; do
  rel=${f#"$work/kernel/lib/modules/$kver/"}
  mkdir -p "$dst/$(dirname "$rel")"
  cp "$f" "$dst/$rel"
done
depmod -b "$root" "$kver"
echo "$mods" > "$root/etc/vm-modules"

# Trim what a test run never reads (python3 comes with nfs-common for
# mountstats and nfsiostat, unused here).
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
  "$root"/usr/share/info/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/zoneinfo "$root"/var/cache/debconf/* \
  "$root"/usr/lib/python3* "$root"/usr/bin/python3* "$root"/usr/lib/x86_64-linux-gnu/gconv
ln -sf /proc/self/mounts "$root/etc/mtab"

# PID 1: mount the basics, load the modules, mount the host share and hand
# over to the run's script there (so changing the tests never rebuilds this).
cat > "$root/init" <<'INIT'
#!/bin/bash
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /host
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/vm-modules); do modprobe "$m" || echo "init: modprobe $m failed"; done
ip link set lo up
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host /host; then
  /bin/bash /host/guest.sh
  echo "init: guest.sh exited with $?"
else
  echo "init: cannot mount the host share"
fi
sync
echo 1 > /proc/sys/kernel/sysrq
echo o > /proc/sysrq-trigger
sleep 10
INIT
chmod 755 "$root/init"

echo "image: packing initramfs"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) > "$work/initrd.cpio"
rm -rf "$root" "$work/kernel" "$work"/*.deb
rm -rf "$out"
mv "$work" "$out"
du -sh "$out"/* | sed 's/^/image: /'
