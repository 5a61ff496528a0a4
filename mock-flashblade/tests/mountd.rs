//! The simulated mount daemon (`GET /mock/mount`): who may mount a file
//! system, from its rules string or its export policy, and the owner and
//! mode of a new file system's root directory.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::Api;
use mock_flashblade::{FsRoot, MockConfig};
use serde_json::{Value, json};

async fn ask(api: &Api, name: &str, client: &str) -> (u16, Value) {
    let r = api
        .client
        .get(format!("{}/mock/mount", api.base))
        .query(&[("name", name), ("client", client)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn create(api: &Api, name: &str, body: Value) {
    let r = api
        .call("POST", &format!("file-systems?names={name}"), Some(body))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn rules_string_decides_who_mounts() {
    let m = mock_flashblade::start(MockConfig::default()).await.unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    create(
        &api,
        "home",
        json!({"nfs": {"v3_enabled": true, "v4_1_enabled": true,
                       "rules": "*(ro) 10.0.0.0/24(rw,no_root_squash) fd00::/64(rw,all_squash,anonuid=1000,anongid=100)"}}),
    )
    .await;

    let (status, body) = ask(&api, "home", "10.0.0.5").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access"], "rw");
    assert_eq!(body["squash"], "no_root_squash");
    assert_eq!(body["rule"], "10.0.0.0/24(rw,no_root_squash)");
    assert_eq!(body["path"], m.fs_dir("home").to_string_lossy().as_ref());

    // Another address falls through to `*`, evaluated last.
    let (status, body) = ask(&api, "home", "10.9.9.9").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["access"].as_str(), body["squash"].as_str()),
        (Some("ro"), Some("root_squash"))
    );
    assert_eq!(body["anonuid"], 65534);

    let (status, body) = ask(&api, "home", "fd00::7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["squash"], "all_squash");
    assert_eq!(
        (body["anonuid"].as_u64(), body["anongid"].as_u64()),
        (Some(1000), Some(100))
    );

    // Without the `*` rule, an outsider is refused.
    let r = api
        .call(
            "PATCH",
            "file-systems?names=home",
            Some(json!({"nfs": {"rules": "10.0.0.0/24(rw)"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let (status, body) = ask(&api, "home", "10.9.9.9").await;
    assert_eq!(status, 403, "{body}");
    let msg = message(&body);
    assert!(msg.contains("access denied by server while mounting"), "{msg}");
    assert!(msg.contains("no export rule admits 10.9.9.9"), "{msg}");
    assert_eq!(ask(&api, "home", "10.0.0.200").await.0, 200);

    // Not writable: read-only whatever the rule says.
    api.call(
        "PATCH",
        "file-systems?names=home",
        Some(json!({"writable": false})),
    )
    .await;
    assert_eq!(ask(&api, "home", "10.0.0.5").await.1["access"], "ro");
}

#[tokio::test]
async fn no_export_no_protocol_destroyed_unknown_and_bad_requests() {
    let m = mock_flashblade::start(MockConfig::default()).await.unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    // rules "" (no export): nobody.
    create(&api, "none", json!({"nfs": {"v3_enabled": true, "rules": ""}})).await;
    let (status, body) = ask(&api, "none", "10.0.0.5").await;
    assert_eq!(status, 403);
    assert!(message(&body).contains("not exported"), "{body}");
    // NFS off: nobody, whatever the rules.
    create(&api, "off", json!({"nfs": {"rules": "*(rw)"}})).await;
    let (status, body) = ask(&api, "off", "10.0.0.5").await;
    assert_eq!(status, 403);
    assert!(message(&body).contains("NFS is not enabled"), "{body}");
    // Destroyed: nobody.
    create(
        &api,
        "gone",
        json!({"nfs": {"v3_enabled": true, "rules": "*(rw)"}}),
    )
    .await;
    assert_eq!(ask(&api, "gone", "10.0.0.5").await.0, 200);
    api.call(
        "PATCH",
        "file-systems?names=gone",
        Some(json!({"destroyed": true})),
    )
    .await;
    let (status, body) = ask(&api, "gone", "10.0.0.5").await;
    assert_eq!(status, 403);
    assert!(message(&body).contains("destroyed"), "{body}");

    assert_eq!(ask(&api, "nope", "10.0.0.5").await.0, 404);
    assert_eq!(ask(&api, "none", "host.example").await.0, 400);
    let r = api
        .client
        .get(format!("{}/mock/mount?client=10.0.0.5", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn export_policy_rules_decide_when_attached() {
    let m = mock_flashblade::start(MockConfig::default()).await.unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    let r = api
        .call(
            "POST",
            "nfs-export-policies?names=hub",
            Some(json!({"rules": [
                {"client": "*", "permission": "ro"},
                {"client": "10.1.0.0/16", "permission": "rw", "access": "no-squash"},
            ]})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    create(
        &api,
        "team",
        json!({"nfs": {"v4_1_enabled": true, "export_policy": {"name": "hub"}}}),
    )
    .await;
    let (status, body) = ask(&api, "team", "10.1.2.3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["access"].as_str(), body["squash"].as_str()),
        (Some("rw"), Some("no_root_squash"))
    );
    let (_, body) = ask(&api, "team", "192.168.0.1").await;
    assert_eq!(
        (body["access"].as_str(), body["squash"].as_str()),
        (Some("ro"), Some("root_squash"))
    );
    // A disabled policy exports nothing.
    api.call(
        "PATCH",
        "nfs-export-policies?names=hub",
        Some(json!({"enabled": false})),
    )
    .await;
    let (status, body) = ask(&api, "team", "10.1.2.3").await;
    assert_eq!(status, 403);
    assert!(message(&body).contains("disabled"), "{body}");
}

fn owner_mode(p: &std::path::Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
}

#[tokio::test]
async fn new_file_system_root_gets_the_arrays_owner_and_mode() {
    let root = nix::unistd::geteuid().is_root();
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    // The default: root:root 0755 (the owner only when running as root).
    let m = mock_flashblade::start(MockConfig::default()).await.unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    create(&api, "a", json!({})).await;
    let want_owner = if root { (0, 0) } else { me };
    assert_eq!(owner_mode(&m.fs_dir("a")), (want_owner.0, want_owner.1, 0o755));

    // Configured.
    let m = mock_flashblade::start(MockConfig {
        fs_root: FsRoot {
            uid: 1000,
            gid: 100,
            mode: 0o2770,
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    create(&api, "b", json!({})).await;
    let want_owner = if root { (1000, 100) } else { me };
    assert_eq!(owner_mode(&m.fs_dir("b")), (want_owner.0, want_owner.1, 0o2770));

    // A clone's root is its snapshot's, not the default.
    std::fs::set_permissions(m.fs_dir("b"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = api
        .call(
            "POST",
            "file-system-snapshots?source_names=b",
            Some(json!({"suffix": "s1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    create(&api, "c", json!({"source": {"name": "b.s1"}})).await;
    assert_eq!(owner_mode(&m.fs_dir("c")), (want_owner.0, want_owner.1, 0o700));
}
