//! `/proc/self/mountinfo`: the node's source of truth for what is mounted
//! where. Reading it never touches the mounted file systems, so a dead NFS
//! server cannot hang the check (unlike stat() on the mount point).

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor` of the mounted device (NFS and tmpfs get anonymous ones).
    pub device: String,
    /// The directory of the source file system this mount shows (bind mounts
    /// show a subdirectory here).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// The per-mount options, comma-separated as the kernel writes them.
    pub options: String,
    pub fs_type: String,
    pub source: String,
    /// The file system's options, comma-separated.
    pub super_options: String,
}

impl MountEntry {
    pub(crate) fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if v <= 255 {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mountinfo line the parser does not understand, quoted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("no separator in {0:?}")]
    NoSeparator(String),
    #[error("too few fields in {0:?}")]
    TooFewFields(String),
    #[error("bad number {field:?} in {line:?}")]
    Number {
        field: String,
        line: String,
        #[source]
        source: std::num::ParseIntError,
    },
}

/// Why the mount table could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Parses one mountinfo line.
pub(crate) fn parse_line(line: &str) -> Result<MountEntry, ParseError> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields
        .iter()
        .position(|f| *f == "-")
        .ok_or_else(|| ParseError::NoSeparator(line.to_string()))?;
    if sep < 6 || fields.len() < sep + 4 {
        return Err(ParseError::TooFewFields(line.to_string()));
    }
    let num = |s: &str| {
        s.parse::<u32>().map_err(|source| ParseError::Number {
            field: s.to_string(),
            line: line.to_string(),
            source,
        })
    };
    Ok(MountEntry {
        mount_id: num(fields[0])?,
        parent_id: num(fields[1])?,
        device: fields[2].to_string(),
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        options: fields[5].to_string(),
        fs_type: unescape(fields[sep + 1]),
        source: unescape(fields[sep + 2]),
        super_options: fields[sep + 3].to_string(),
    })
}

pub(crate) fn parse(text: &str) -> Result<Vec<MountEntry>, ParseError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

/// Reads and parses `/proc/self/mountinfo`.
pub(crate) fn read() -> Result<Vec<MountEntry>, ReadError> {
    let file = std::fs::File::open("/proc/self/mountinfo")?;
    let text = String::from_utf8(read_all(file, 64 * 1024)?)?;
    Ok(parse(&text)?)
}

/// Reads to the end, offering at least `chunk` bytes to every read. A /proc
/// file has no size, so `read_to_string` starts at 32 bytes and doubles;
/// the kernel hands out up to a page per read of mountinfo, each under the
/// mount namespace's lock, so small first reads only add system calls.
fn read_all(mut from: impl std::io::Read, chunk: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; chunk];
    let mut len = 0;
    loop {
        if buf.len() - len < chunk {
            buf.resize(len + chunk.max(len), 0);
        }
        match from.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// A parsed mount table, shared by the callers one reading served.
pub(crate) type MountTable = std::sync::Arc<Vec<MountEntry>>;

/// Readings of the mount table shared by callers that wait at the same time.
///
/// A caller gets the result of a reading that *started after it arrived*, so
/// it sees every mount made before its request, as with a reading of its
/// own; callers that arrive while one reading runs share the next one. When
/// a class's pods land on one node, hundreds of publishes would each read a
/// table of hundreds of mounts (the kernel formats every line under the
/// mount lock, which was half the node's CPU in `cargo bench --bench node`);
/// this way one reading serves all that queued behind the previous one.
/// Blocking: call it on a blocking thread.
pub(crate) struct SharedReads<T> {
    state: std::sync::Mutex<ReadState<T>>,
    finished: std::sync::Condvar,
}

struct ReadState<T> {
    /// Readings started and finished so far; one runs at a time.
    started: u64,
    finished: u64,
    /// Callers waiting for a reading; the last result is kept only for them.
    waiting: usize,
    latest: Option<T>,
}

impl<T: Clone> SharedReads<T> {
    pub(crate) fn new() -> Self {
        SharedReads {
            state: std::sync::Mutex::new(ReadState {
                started: 0,
                finished: 0,
                waiting: 0,
                latest: None,
            }),
            finished: std::sync::Condvar::new(),
        }
    }

    /// The result of a `read` that started after this call did.
    pub(crate) fn get(&self, read: impl Fn() -> T) -> T {
        let lock = || self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = lock();
        let want = st.started + 1;
        loop {
            if st.finished >= want
                && let Some(v) = &st.latest
            {
                let v = v.clone();
                if st.waiting == 0 {
                    // No one else can use it: a new caller needs a newer one.
                    st.latest = None;
                }
                return v;
            }
            if st.started == st.finished {
                // None running: start the one this caller needs.
                st.started += 1;
                let n = st.started;
                drop(st);
                let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&read));
                st = lock();
                let v = match v {
                    Ok(v) => v,
                    Err(panic) => {
                        // Never started, as far as the others know: the
                        // next waiter starts one.
                        st.started -= 1;
                        self.finished.notify_all();
                        drop(st);
                        std::panic::resume_unwind(panic);
                    }
                };
                st.finished = n;
                st.latest = (st.waiting > 0).then(|| v.clone());
                self.finished.notify_all();
                return v;
            }
            st.waiting += 1;
            st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
    }
}

/// The mounts at `path`, oldest first (mounts can be stacked).
#[cfg(test)]
fn mounts_at<'a>(mounts: &'a [MountEntry], path: &Path) -> Vec<&'a MountEntry> {
    mounts.iter().filter(|m| m.mount_point == path).collect()
}

/// The mount visible at `path` (the last one stacked there). Both sides are
/// normalised absolute paths (the kernel's, and resolved ones), so their
/// bytes are compared: `Path`'s `==` walks components, and this runs for
/// every path component against every mount.
pub(crate) fn top_mount_at<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    let path = path.as_os_str();
    mounts.iter().rev().find(|m| m.mount_point.as_os_str() == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines: a node with an NFS v4.1 mount of a FlashBlade file system,
    // a kubelet bind mount of it into a pod (read-only), a tmpfs, and a
    // path with a space.
    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
1121 27 0:151 / /var/lib/kubelet/plugins/kubernetes.io/csi/flashblade.csi.dev/4b2c/globalmount rw,relatime shared:540 - nfs4 10.21.0.10:/k8s-pvc-4b2c rw,vers=4.1,rsize=524288,wsize=524288,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.20.1.5,local_lock=none,addr=10.21.0.10
1187 27 0:151 / /var/lib/kubelet/pods/5e1f/volumes/kubernetes.io~csi/pvc-4b2c/mount ro,relatime shared:540 - nfs4 10.21.0.10:/k8s-pvc-4b2c rw,vers=4.1,hard,proto=tcp,sec=sys,addr=10.21.0.10
1200 27 0:160 / /tmp/with\\040space rw,nosuid,nodev - tmpfs tmpfs rw,size=1024k
1201 27 254:0 /srv/exports/datasets /var/lib/kubelet/pods/77/volumes/kubernetes.io~csi/ds/mount ro,relatime - ext4 /dev/vda rw
";

    #[test]
    fn parses_real_lines() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(m.len(), 6);
        let nfs = &m[2];
        assert_eq!(nfs.fs_type, "nfs4");
        assert_eq!(nfs.source, "10.21.0.10:/k8s-pvc-4b2c");
        assert_eq!(nfs.device, "0:151");
        assert!(!nfs.read_only());
        assert!(nfs.super_options.split(',').any(|o| o == "vers=4.1"));
        let pod = &m[3];
        assert!(pod.read_only());
        assert_eq!(pod.device, nfs.device);
        assert_eq!(m[4].mount_point, PathBuf::from("/tmp/with space"));
        assert_eq!(m[5].root, PathBuf::from("/srv/exports/datasets"));
        assert_eq!(m[1].options, "rw,relatime");
        assert!(!m[1].read_only());
    }

    #[test]
    fn lookups() {
        let m = parse(SAMPLE).unwrap();
        assert!(top_mount_at(&m, Path::new("/tmp/with space")).is_some());
        assert!(top_mount_at(&m, Path::new("/tmp")).is_none());
        assert_eq!(mounts_at(&m, Path::new("/")).len(), 1);
    }

    #[test]
    fn unescapes_and_rejects_garbage() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("bad\\09x"), "bad\\09x");
        assert!(parse_line("").is_err());
        assert!(parse_line("1 2 3").is_err());
        assert!(parse_line("x 1 0:1 / /a rw - tmpfs t rw").is_err());
        assert!(parse_line("1 1 0:1 / /a rw -").is_err());
    }

    #[test]
    fn reads_everything_in_large_reads() {
        /// Hands out at most `max` bytes per read and counts the reads.
        struct Trickle<'a> {
            data: &'a [u8],
            max: usize,
            reads: usize,
        }
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.reads += 1;
                let n = buf.len().min(self.max).min(self.data.len());
                buf[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                Ok(n)
            }
        }
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut t = Trickle {
            data: &data,
            max: usize::MAX,
            reads: 0,
        };
        assert_eq!(read_all(&mut t, 64 * 1024).unwrap(), data);
        // 64 KiB, then the 35 KiB left, then the end.
        assert_eq!(t.reads, 3);
        let mut t = Trickle {
            data: &data,
            max: 7,
            reads: 0,
        };
        assert_eq!(read_all(&mut t, 16).unwrap(), data);
        assert!(read_all(&[][..], 16).unwrap().is_empty());
    }

    #[test]
    fn shared_readings_are_never_older_than_the_caller() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let shared = Arc::new(SharedReads::new());
        // The "table": a counter that other threads bump (mounts being made).
        let table = Arc::new(AtomicU64::new(0));
        let readings = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let (shared, table, readings) = (shared.clone(), table.clone(), readings.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let before = table.fetch_add(1, Ordering::SeqCst) + 1;
                        let seen = shared.get(|| {
                            readings.fetch_add(1, Ordering::SeqCst);
                            let v = table.load(Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            v
                        });
                        assert!(
                            seen >= before,
                            "a reading from before the call: {seen} < {before}"
                        );
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
        let n = readings.load(Ordering::SeqCst);
        assert!(n >= 20, "every caller needs readings of its own time: {n}");
        assert!(
            n < 64 * 20,
            "waiting callers shared readings: {n} for {}",
            64 * 20
        );
    }

    #[test]
    fn a_panicking_reading_does_not_block_the_next() {
        use std::sync::Arc;
        let shared = Arc::new(SharedReads::new());
        let s = shared.clone();
        let panicked = std::thread::spawn(move || s.get(|| -> u32 { panic!("reading failed") })).join();
        assert!(panicked.is_err());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(shared.get(|| 7u32)).unwrap());
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(7));
    }

    #[test]
    fn reads_this_process() {
        let m = read().unwrap();
        assert!(m.iter().any(|e| e.mount_point == Path::new("/")));
    }
}
