//! Hard limits enforced on writes when the simulator's data lives on btrfs:
//! a write past a file system's provisioned size fails with EDQUOT while its
//! hard limit is on, as a FlashBlade's NFS clients see it; raising the size
//! or turning the limit off lets it through; snapshot views are not charged;
//! eradication removes the file system. Root only (it mounts a loop image);
//! needs mkfs.btrfs (scripts/test installs btrfs-progs).

mod common;

use std::io::Write;

use common::Api;
use mock_flashblade::{BtrfsScratch, MockConfig};
use serde_json::json;

const MIB: u64 = 1 << 20;

/// Writes `mib` MiB into `path` in 1 MiB pieces, flushing each to the file
/// system; returns the MiB written and the error that stopped it.
fn fill(path: &std::path::Path, mib: u64) -> (u64, Option<std::io::Error>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![7u8; MIB as usize];
    for i in 0..mib {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_data()) {
            return (i, Some(e));
        }
    }
    (mib, None)
}

fn is_edquot(e: &Option<std::io::Error>) -> bool {
    e.as_ref().and_then(|e| e.raw_os_error()) == Some(libc_edquot())
}

fn libc_edquot() -> i32 {
    nix::errno::Errno::EDQUOT as i32
}

#[tokio::test]
async fn writes_past_the_hard_limit_fail_with_edquot() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to mount a btrfs image");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let scratch = BtrfsScratch::mount(
        &work.path().join("array.img"),
        &work.path().join("array"),
        1 << 30,
    )
    .expect("a btrfs scratch file system (install btrfs-progs: scripts/test does)");
    let m = mock_flashblade::start(MockConfig {
        state_dir: Some(scratch.mount_point().to_path_buf()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(m.hard_limits.is_ok(), "{:?}", m.hard_limits);
    let mut api = Api::new(&m);
    api.login().await;
    let body = json!({"provisioned": 8 * MIB, "hard_limit_enabled": true});
    assert_eq!(
        api.call("POST", "file-systems?names=home", Some(body))
            .await
            .status,
        200
    );
    let root = m.fs_dir("home");

    // Stopped at the limit, with EDQUOT, not before it.
    let (written, err) = fill(&root.join("big"), 16);
    assert!(is_edquot(&err), "{err:?}");
    assert!(
        (6..=8).contains(&written),
        "{written} MiB written under an 8 MiB limit"
    );

    // A snapshot: its view under .snapshot is not charged to the limit.
    std::fs::remove_file(root.join("big")).unwrap();
    let (w, err) = fill(&root.join("data"), 5);
    assert_eq!((w, err.is_none()), (5, true));
    let r = api
        .call(
            "POST",
            "file-system-snapshots?source_names=home",
            Some(json!({"suffix": "s1"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(root.join(".snapshot/s1/data").is_file());
    let (w, err) = fill(&root.join("more"), 2);
    assert_eq!(
        (w, err.is_none()),
        (2, true),
        "the snapshot view was charged: {err:?}"
    );

    // Raised: room again. Limit off: no limit.
    let r = api
        .call(
            "PATCH",
            "file-systems?names=home",
            Some(json!({"provisioned": 32 * MIB})),
        )
        .await;
    assert_eq!(r.status, 200);
    let (w, err) = fill(&root.join("more"), 10);
    assert_eq!((w, err.is_none()), (10, true), "{err:?}");
    let (_, err) = fill(&root.join("more"), 32);
    assert!(is_edquot(&err), "{err:?}");
    let r = api
        .call(
            "PATCH",
            "file-systems?names=home",
            Some(json!({"hard_limit_enabled": false})),
        )
        .await;
    assert_eq!(r.status, 200);
    let (w, err) = fill(&root.join("unlimited"), 24);
    assert_eq!((w, err.is_none()), (24, true), "{err:?}");

    // A file system without a hard limit is never limited.
    let body = json!({"provisioned": 4 * MIB, "hard_limit_enabled": false});
    assert_eq!(
        api.call("POST", "file-systems?names=soft", Some(body))
            .await
            .status,
        200
    );
    let (w, err) = fill(&m.fs_dir("soft").join("f"), 8);
    assert_eq!((w, err.is_none()), (8, true), "{err:?}");

    // Destroyed and eradicated: its subvolume is gone.
    let r = api
        .call(
            "PATCH",
            "file-systems?names=home",
            Some(json!({"destroyed": true})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.call("DELETE", "file-systems?names=home", None).await.status,
        200
    );
    assert!(!root.exists());
    m.stop();
    drop(scratch);
}
