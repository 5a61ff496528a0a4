//! The `.snapshot` directory the simulator keeps in each file system's data
//! directory: one read-only copy per live snapshot, named by its suffix;
//! gone when the snapshot is destroyed or eradicated; hidden when the file
//! system's `snapshot_directory_enabled` is false; never part of the data.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::Api;
use mock_flashblade::MockConfig;
use serde_json::json;

#[tokio::test]
async fn snapshots_appear_read_only_under_dot_snapshot() {
    let m = mock_flashblade::start(MockConfig::default()).await.unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    assert_eq!(
        api.call("POST", "file-systems?names=ds", Some(json!({})))
            .await
            .status,
        200
    );
    let root = m.fs_dir("ds");
    let snapdir = root.join(".snapshot");
    // Enabled by default: present and empty before the first snapshot.
    assert!(snapdir.is_dir());
    assert_eq!(std::fs::read_dir(&snapdir).unwrap().count(), 0);

    std::fs::create_dir(root.join("train")).unwrap();
    std::fs::write(root.join("train/a.csv"), "v1").unwrap();
    let snap = |sfx: &'static str| json!({ "suffix": sfx });
    assert_eq!(
        api.call("POST", "file-system-snapshots?source_names=ds", Some(snap("v1")))
            .await
            .status,
        200
    );
    std::fs::write(root.join("train/a.csv"), "v2-longer").unwrap();
    assert_eq!(
        api.call("POST", "file-system-snapshots?source_names=ds", Some(snap("v2")))
            .await
            .status,
        200
    );
    assert_eq!(
        std::fs::read_to_string(snapdir.join("v1/train/a.csv")).unwrap(),
        "v1"
    );
    assert_eq!(
        std::fs::read_to_string(snapdir.join("v2/train/a.csv")).unwrap(),
        "v2-longer"
    );
    // No snapshot of the snapshots, and read-only files and directories.
    assert!(!snapdir.join("v2/.snapshot").exists());
    for p in ["v1", "v1/train", "v1/train/a.csv"] {
        let mode = std::fs::metadata(snapdir.join(p)).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "{p} is writable: {mode:o}");
    }
    // The view is not data: usage counts the live file once.
    let r = api.call("GET", "file-systems?names=ds", None).await;
    assert_eq!(r.body["items"][0]["space"]["virtual"], 9);

    // Destroyed: hidden; recovered: back; eradicated: gone.
    let r = api
        .call(
            "PATCH",
            "file-system-snapshots?names=ds.v1",
            Some(json!({"destroyed": true})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(!snapdir.join("v1").exists());
    api.call(
        "PATCH",
        "file-system-snapshots?names=ds.v1",
        Some(json!({"destroyed": false})),
    )
    .await;
    assert!(snapdir.join("v1/train/a.csv").is_file());
    api.call(
        "PATCH",
        "file-system-snapshots?names=ds.v1",
        Some(json!({"destroyed": true})),
    )
    .await;
    assert_eq!(
        api.call("DELETE", "file-system-snapshots?names=ds.v1", None)
            .await
            .status,
        200
    );
    assert!(!snapdir.join("v1").exists());
    assert!(snapdir.join("v2").is_dir());

    // Switched off: no .snapshot at all; switched on: back.
    let off = json!({"snapshot_directory_enabled": false});
    assert_eq!(
        api.call("PATCH", "file-systems?names=ds", Some(off)).await.status,
        200
    );
    assert!(!snapdir.exists());
    let on = json!({"snapshot_directory_enabled": true});
    api.call("PATCH", "file-systems?names=ds", Some(on)).await;
    assert_eq!(
        std::fs::read_to_string(snapdir.join("v2/train/a.csv")).unwrap(),
        "v2-longer"
    );

    // A restore in place keeps the view; a clone starts with its own.
    let r = api
        .call(
            "POST",
            "file-systems?names=ds&overwrite=true&discard_non_snapshotted_data=true",
            Some(json!({"source": {"name": "ds.v2"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(snapdir.join("v2").is_dir());
    let r = api
        .call(
            "POST",
            "file-systems?names=copy",
            Some(json!({"source": {"name": "ds.v2"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        std::fs::read_to_string(m.fs_dir("copy").join("train/a.csv")).unwrap(),
        "v2-longer"
    );
    assert_eq!(
        std::fs::read_dir(m.fs_dir("copy").join(".snapshot"))
            .unwrap()
            .count(),
        0
    );

    // A file system created with the directory off never shows one.
    let body = json!({"snapshot_directory_enabled": false});
    api.call("POST", "file-systems?names=plain", Some(body)).await;
    assert!(!m.fs_dir("plain").join(".snapshot").exists());

    // Eradicating the file system removes it, read-only copies included.
    api.call("PATCH", "file-systems?names=ds", Some(json!({"destroyed": true})))
        .await;
    assert_eq!(
        api.call("DELETE", "file-systems?names=ds", None).await.status,
        200
    );
    assert!(!root.exists());
}
