//! The configuration and StorageClasses shipped in deploy/ are accepted by the
//! driver's own parsers (so a manifest typo fails here, not on a cluster).

use std::collections::HashMap;

use flashblade_csi::config::{Config, Mode, Settings};
use flashblade_csi::controller::params::{SnapshotParams, VolumeParams};

fn load(path: &str, mode: Mode, dir: &std::path::Path) -> Config {
    let text = std::fs::read_to_string(path).unwrap();
    // Point the credential paths at files that exist here.
    let token = dir.join("api-token");
    let ca = dir.join("ca.pem");
    std::fs::write(&token, "placeholder").unwrap();
    let ca_pem = mock_flashblade::tls::generate(&[]).unwrap().ca_pem.unwrap();
    std::fs::write(&ca, ca_pem).unwrap();
    let text = text
        .replace(
            "/etc/flashblade-csi/credentials/fb01/api-token",
            token.to_str().unwrap(),
        )
        .replace(
            "/etc/flashblade-csi/credentials/fb01/ca.pem",
            ca.to_str().unwrap(),
        );
    let args = Settings {
        mode: Some(mode),
        endpoint: Some("unix:///csi/csi.sock".into()),
        node_id: Some("node-1".into()),
        ..Default::default()
    };
    Config::from_parts(&args, &text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `parameters:` maps of a multi-document YAML file (flat string maps,
/// as StorageClasses and VolumeSnapshotClasses have).
fn parameter_blocks(path: &str) -> Vec<(String, HashMap<String, String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for doc in text.split("\n---") {
        let name = doc
            .lines()
            .skip_while(|l| !l.starts_with("metadata:"))
            .find_map(|l| l.trim().strip_prefix("name: "))
            .unwrap_or("?")
            .to_string();
        let mut params = HashMap::new();
        let mut inside = false;
        for line in doc.lines() {
            if line.starts_with("parameters:") {
                inside = true;
                continue;
            }
            if inside {
                if !line.starts_with("  ") {
                    inside = false;
                    continue;
                }
                let t = line.trim();
                if t.starts_with('#') || t.is_empty() {
                    continue;
                }
                let (k, v) = t.split_once(':').unwrap();
                params.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
        out.push((name, params));
    }
    out
}

#[test]
fn base_config_is_valid_for_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let c = load("deploy/kubernetes/base/config.toml", Mode::Controller, dir.path());
    assert_eq!(c.driver_name, "flashblade.csi.dev");
    assert!(
        c.timeouts.array_request < std::time::Duration::from_secs(60),
        "below the provisioner's --timeout"
    );
    load("deploy/kubernetes/base/config.toml", Mode::Node, dir.path());
    load(
        "deploy/kubernetes/overlays/production/config.toml",
        Mode::Controller,
        dir.path(),
    );
    load(
        "deploy/kubernetes/overlays/dev/config.toml",
        Mode::Controller,
        dir.path(),
    );
    load(
        "deploy/kubernetes/overlays/dev/config.toml",
        Mode::Node,
        dir.path(),
    );
}

#[test]
fn storage_classes_parse() {
    let dir = tempfile::tempdir().unwrap();
    let c = load("deploy/kubernetes/base/config.toml", Mode::Controller, dir.path());
    let classes = parameter_blocks("deploy/kubernetes/base/storageclasses.yaml");
    assert_eq!(classes.len(), 2);
    for (name, params) in classes {
        assert!(!params.is_empty(), "{name}");
        VolumeParams::parse(&params, &c).unwrap_or_else(|e| panic!("StorageClass {name}: {e}"));
    }
    for (name, params) in parameter_blocks("deploy/kubernetes/components/snapshots/volumesnapshotclass.yaml")
    {
        SnapshotParams::parse(&params).unwrap_or_else(|e| panic!("VolumeSnapshotClass {name}: {e}"));
    }
}
