#!/bin/bash
# Runs inside the VM (started by the image's /init from the host share at
# /host). Without arguments: sets up the kernel NFS server on loopback with
# one tmpfs export per test volume, runs the test client (which starts the
# node plugin) and leaves results and logs in /host/out.
# `guest.sh ctl stop|drop|restore|v4-off` controls the server; the client
# calls it to kill and revive the server.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Volumes: each is exported as /<name> from a tmpfs of its own size, so the
# stats of each can be told apart.
VOLUMES="k8s-v41 k8s-v3 k8s-default k8s-r41 k8s-r3 k8s-rnew k8s-rafter k8s-d41 k8s-d3 k8s-dnew k8s-dafter k8s-fallback k8s-shutdown k8s-part-dead k8s-part-ok k8s-v6-41 k8s-v6-3 k8s-flags"
# The isolation phase: 36 file systems of a server that dies, 8 of one that
# stays up (each its own tmpfs, so each is a file system of its own).
VOLUMES="$VOLUMES $(printf 'k8s-iso-d%d ' $(seq 36)) $(printf 'k8s-iso-ok%d ' $(seq 8))"
# Fixed ports for everything NFS uses, so one nftables rule can drop them.
PORTS="111, 2049, 20048, 32765, 32766, 32768"
# The node plugin's deadlines in the guest (seconds): short, so the
# dead-server cases are quick.
MOUNT_TIMEOUT=8
UNMOUNT_TIMEOUT=6
STATS_TIMEOUT=2

start_services() {
  local nfsd_args=("$@")
  mkdir -p /run/rpcbind /var/lib/nfs/rpc_pipefs /var/lib/nfs/v4recovery
  pgrep -x rpcbind > /dev/null || rpcbind -w
  pgrep -x rpc.statd > /dev/null || rpc.statd -p 32765 -o 32766
  mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd
  # Short grace and lease, or the first OPEN after a (re)start stalls up to
  # 90 s, and the first v3 lock ~50 s.
  echo 10 > /proc/fs/nfsd/nfsv4gracetime
  echo 10 > /proc/fs/nfsd/nfsv4leasetime
  echo 10 > /proc/sys/fs/nfs/nlm_grace_period
  echo 32768 > /proc/sys/fs/nfs/nlm_tcpport
  echo 32768 > /proc/sys/fs/nfs/nlm_udpport
  exportfs -ra
  pgrep -x rpc.mountd > /dev/null || rpc.mountd -p 20048
  rpc.nfsd "${nfsd_args[@]}" 4
}

stop_services() {
  rpc.nfsd 0
  pkill -x rpc.mountd || true
  pkill -x rpc.statd || true
  pkill -x rpcbind || true
  for _ in $(seq 50); do
    pgrep -x 'rpc.mountd|rpc.statd|rpcbind' > /dev/null || break
    sleep 0.1
  done
}

if [ "${1:-}" = ctl ]; then
  set -e
  case "$2" in
    stop) stop_services ;;
    drop)
      # Separate commands: a one-line table definition did not parse here.
      nft add table inet vmtest
      nft add chain inet vmtest input '{ type filter hook input priority 0 ; policy accept ; }'
      nft add rule inet vmtest input tcp dport "{ $PORTS }" drop
      nft add rule inet vmtest input udp dport "{ $PORTS }" drop
      ;;
    drop-alt)
      # Only the second address: volumes mounted from 127.0.0.1 stay alive.
      nft add table inet vmtest
      nft add chain inet vmtest input '{ type filter hook input priority 0 ; policy accept ; }'
      nft add rule inet vmtest input ip daddr 127.0.0.2 drop
      ;;
    restore)
      nft delete table inet vmtest 2> /dev/null || true
      if [ "$(cat /proc/fs/nfsd/threads 2> /dev/null || echo 0)" = 0 ]; then start_services; fi
      ;;
    v4-off)
      rpc.nfsd 0
      start_services -N 4
      ;;
    *) echo "unknown ctl $2" >&2; exit 2 ;;
  esac
  exit 0
fi

out=/host/out
exec > "$out/guest.log" 2>&1
t0=$(date +%s.%N)
since() { echo "$(date +%s.%N) $t0" | awk '{printf "%.1f", $1 - $2}'; }
echo "guest: up at $(cut -d' ' -f1 /proc/uptime)s of kernel time; $(uname -r); $(nproc) CPUs"
ln -sf /proc/self/mounts /etc/mtab
hostname vm-node

i=0
: > /etc/exports
for v in $VOLUMES; do
  i=$((i + 1))
  mkdir -p "/$v"
  mount -t tmpfs -o "size=$((32 + i))m" tmpfs "/$v"
  opts="rw,sync,no_root_squash,no_subtree_check,insecure,fsid=$((100 + i))"
  echo "/$v 127.0.0.0/8($opts) ::1($opts)" >> /etc/exports
done
# The first-login phase: homes whose root is root:root 0755, as the
# simulator models a new FlashBlade file system. k8s-home-new: root
# squashed for a "pod network" (all of 127/8) but not for the node
# (127.0.0.1, a single-host rule, which Linux prefers to a network, as
# ControllerPublish's rule comes before any range on the array);
# k8s-home-squash: root squashed for the node too.
for v in k8s-home-new k8s-home-squash; do
  i=$((i + 1))
  mkdir -p "/$v"
  mount -t tmpfs -o "size=8m,mode=0755,uid=0,gid=0" tmpfs "/$v"
  opts="rw,sync,no_subtree_check,insecure,fsid=$((100 + i))"
  if [ "$v" = k8s-home-new ]; then
    echo "/$v 127.0.0.1($opts,no_root_squash) 127.0.0.0/8($opts,root_squash)" >> /etc/exports
  else
    echo "/$v 127.0.0.0/8($opts,root_squash)" >> /etc/exports
  fi
done
# A "pod" address: connections to 127.0.0.3 come from 127.0.0.3, so a
# mount of that server is a client of the pod network, not the node.
ip route add local 127.0.0.3/32 dev lo src 127.0.0.3 table local || echo "guest: no route for 127.0.0.3"
start_services
echo "guest: NFS server up after $(since)s"
cat /proc/fs/nfsd/versions
exportfs -v | head -n 4

# The node plugin runs from the release image's root file system (the host
# copies it to /host/image), chrooted as in its container: its own /run and
# /tmp, the guest's /proc, /sys and /dev (privileged), a read-only root
# (readOnlyRootFilesystem), and the work directory (kubelet's, for the
# client) bind-mounted from a shared mount, which is what Bidirectional
# propagation is: the mounts the plugin makes there reach the guest and the
# client. The NFS mounts are made by the image's mount and mount.nfs.
img=/host/image
work=/var/lib/vm-csi
mkdir -p "$work" "$img$work"
mount --bind "$work" "$work"
mount --make-shared "$work"
mount --bind "$img" "$img"
mount -t proc proc "$img/proc"
mount --rbind /sys "$img/sys"
mount --rbind /dev "$img/dev"
mount -t tmpfs tmpfs "$img/run"
mount -t tmpfs tmpfs "$img/tmp"
mount --bind "$work" "$img$work"
mount -o remount,bind,ro "$img"
printf '#!/bin/sh\nexec chroot %s /usr/local/bin/flashblade-csi "$@"\n' "$img" > /run/plugin-in-image
chmod 755 /run/plugin-in-image
echo "guest: plugin from the image: $(/run/plugin-in-image --version); mount.nfs $(chroot "$img" dpkg-query -W -f '${Version}' nfs-common)"
grep -E " ($img$work|$work) " /proc/self/mountinfo

[ -f /host/phases ] && export VM_PHASES="$(cat /host/phases)"
/host/bin/vm-nfs-client \
  --plugin /run/plugin-in-image \
  --guest-script /host/guest.sh \
  --results "$out/results.jsonl" \
  --plugin-log "$out/plugin.log" \
  --work /var/lib/vm-csi \
  --mount-timeout "$MOUNT_TIMEOUT" --unmount-timeout "$UNMOUNT_TIMEOUT" --stats-timeout "$STATS_TIMEOUT"
echo "guest: client exited with $? after $(since)s"

echo "--- mounts left"
grep -E ' nfs4? | /var/lib/vm-csi' /proc/self/mountinfo || echo none
echo "--- processes"
ps -eLo pid,tid,stat,wchan:32,comm | grep -vE ' (kworker|ksoftirq|rcu_|migration|cpuhp|idle_inject)' | head -n 80
echo "--- kernel messages (nfs, rpc, lockd)"
dmesg | grep -iE 'nfs|rpc|lockd|hung' | tail -n 40
sync
