//! The module layering of the driver, checked from the source: which module
//! may use which. The domain (`volume`) and configuration sit at the bottom,
//! the array client above them, the CSI services above that, and only the
//! wiring (`app`, `server`, `admin`, `demo`) sees everything. A `use` that
//! breaks the layering (and so could close a cycle) fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the crate modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("text", &[]),
    ("csi", &[]),
    ("secret", &[]),
    ("inflight", &[]),
    ("context", &[]),
    ("deadline", &[]),
    ("metrics", &[]),
    ("authority", &[]),
    ("volume", &["csi", "text"]),
    ("config", &["volume", "text"]),
    ("telemetry", &["config"]),
    ("flashblade", &["config", "volume", "secret", "text", "metrics"]),
    ("error", &["flashblade", "volume", "text"]),
    ("identity", &["csi", "flashblade"]),
    // The Kubernetes API (kube): plain facts about PVs, claims, attachments.
    ("cluster", &["volume"]),
    (
        "node",
        &[
            "config",
            "volume",
            "error",
            "csi",
            "context",
            "deadline",
            "inflight",
            "metrics",
            "telemetry",
            "text",
        ],
    ),
    (
        "controller",
        &[
            "config",
            "volume",
            "error",
            "flashblade",
            "csi",
            "context",
            "deadline",
            "inflight",
            "metrics",
            "telemetry",
            "text",
            // ListVolumes reads the PVs' handles (read-only).
            "cluster",
        ],
    ),
    // Wiring: the admin commands join the array (through the controller's
    // checks and the array client) with the cluster.
    (
        "admin",
        &[
            "app",
            "cluster",
            "config",
            "context",
            "controller",
            "error",
            "flashblade",
            "volume",
            "metrics",
            // Bounded names in adopt's messages.
            "text",
        ],
    ),
];

/// The crate modules a source file or directory refers to.
fn uses(path: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let files: Vec<_> = if path.is_dir() {
        walk(path)
    } else {
        vec![path.to_path_buf()]
    };
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // use crate::{a::X, b::Y};
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, may) in &allowed {
        let path = if src.join(module).is_dir() {
            src.join(module)
        } else {
            src.join(format!("{module}.rs"))
        };
        assert!(path.exists(), "{} does not exist", path.display());
        for used in uses(&path) {
            if used != *module && !may.contains(&used.as_str()) {
                problems.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(problems.is_empty(), "layering broken: {problems:?}");
}

#[test]
fn the_checker_sees_uses() {
    // The checker itself: a module known to use the array client is seen to.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(uses(&src.join("controller")).contains("flashblade"));
    assert!(uses(&src.join("server.rs")).contains("controller"));
}
