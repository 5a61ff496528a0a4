//! The module layering of both crates, checked from the source: which
//! module may use which, and that no chain of uses comes back to where it
//! started. A module's files count as one (a child may use its parent).
//!
//! The driver: the domain (`volume`) and configuration sit at the bottom,
//! the array client above them, the CSI services above that, and only the
//! wiring (`app`, `server`, `admin`, `demo`) sees everything.
//!
//! The simulator: the array's state (`state`) knows nothing of HTTP
//! connections; the routes take any `state::Store`. The server's shared
//! state, the request gate, login and the control endpoint sit above it,
//! and `server` puts them together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the crate modules it may use.
const DRIVER: &[(&str, &[&str])] = &[
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
    // The gRPC server: the services and what serves them.
    (
        "server",
        &[
            "authority",
            "controller",
            "csi",
            "identity",
            "metrics",
            "node",
            "telemetry",
        ],
    ),
    // Wiring: start-up of every mode.
    (
        "app",
        &[
            "config",
            "controller",
            "flashblade",
            "identity",
            "metrics",
            "node",
            "server",
            "volume",
        ],
    ),
    // Wiring: the walk-through drives the whole product.
    (
        "demo",
        &[
            "admin",
            "app",
            "cluster",
            "config",
            "csi",
            "error",
            "flashblade",
            "metrics",
            "node",
            "telemetry",
            "volume",
        ],
    ),
];

/// The simulator's modules → the modules each may use.
const SIMULATOR: &[(&str, &[&str])] = &[
    ("faults", &[]),
    ("quirks", &[]),
    ("limits", &[]),
    ("filter", &[]),
    ("data", &[]),
    ("mountd", &[]),
    ("tls", &[]),
    ("api", &["filter"]),
    // The array: its objects, their rules and routes over any Store.
    ("state", &["api", "data", "filter", "limits", "mountd", "quirks"]),
    ("sessions", &["api", "state"]),
    // What every connection shares; it implements state::Store.
    ("shared", &["faults", "sessions", "state"]),
    ("gate", &["api", "shared"]),
    ("login", &["api", "gate", "shared"]),
    ("control", &["api", "faults", "mountd", "shared", "state"]),
    (
        "server",
        &[
            "api", "control", "faults", "gate", "login", "quirks", "shared", "state",
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

fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// A crate's top-level modules (files and directories under `src`, but
/// not the crate roots) and what each uses of the others.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let is_module = p.is_dir() || p.extension().is_some_and(|x| x == "rs");
        if !is_module || name == "lib" || name == "main" {
            continue;
        }
        modules.insert(name, p);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(name, path)| {
            let used = uses(&path)
                .into_iter()
                .filter(|u| *u != name && names.contains(u))
                .collect();
            (name, used)
        })
        .collect()
}

/// Every use goes down the table, and every module is in it.
fn check_layers(src: &Path, table: &[(&str, &[&str])]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = table.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, used) in graph(src) {
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!("{module} is not in the layering table"));
            continue;
        };
        for u in used {
            if !may.contains(&u.as_str()) {
                problems.push(format!("{module} uses {u}"));
            }
        }
    }
    for module in allowed.keys() {
        let dir = src.join(module);
        let file = src.join(format!("{module}.rs"));
        if !dir.is_dir() && !file.exists() {
            problems.push(format!("{module} is in the table but not in {}", src.display()));
        }
    }
    problems
}

/// A chain of uses that comes back to its start, if any.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in &g[m] {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

fn driver_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn simulator_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mock-flashblade/src")
}

#[test]
fn driver_modules_use_only_the_layers_below_them() {
    let problems = check_layers(&driver_src(), DRIVER);
    assert!(problems.is_empty(), "layering broken: {problems:?}");
}

#[test]
fn simulator_modules_use_only_the_layers_below_them() {
    let problems = check_layers(&simulator_src(), SIMULATOR);
    assert!(problems.is_empty(), "layering broken: {problems:?}");
}

#[test]
fn neither_crate_has_a_cycle() {
    for src in [driver_src(), simulator_src()] {
        let cycle = find_cycle(&graph(&src));
        assert!(cycle.is_none(), "{}: cycle {cycle:?}", src.display());
    }
}

#[test]
fn the_checker_sees_uses_and_cycles() {
    // The checker itself: modules known to use others are seen to.
    let src = driver_src();
    assert!(uses(&src.join("controller")).contains("flashblade"));
    assert!(uses(&src.join("server.rs")).contains("controller"));
    assert!(graph(&simulator_src())["server"].contains("state"));
    // A cycle and a use against the table are both found.
    let mut g = graph(&simulator_src());
    assert!(find_cycle(&g).is_none());
    g.get_mut("state").unwrap().insert("server".to_string());
    let cycle = find_cycle(&g).expect("state -> server -> state");
    assert_eq!(cycle.first(), cycle.last());
    let mut table: Vec<_> = SIMULATOR.to_vec();
    table.retain(|(m, _)| *m != "gate");
    assert!(
        check_layers(&simulator_src(), &table)
            .iter()
            .any(|p| p == "gate is not in the layering table")
    );
}
