//! `flashblade-csi schema`: the settings and input rules this build
//! enforces, as JSON, so that what checks them outside Rust (the Helm
//! chart's values schema, the deploy checks) reads them from the binary
//! instead of copying them.

use serde_json::{Value, json};

use crate::config::{ArraySettings, Settings};
use crate::controller::params::VOLUME_KEYS;
use crate::volume::rules;
use crate::volume::{ArrayName, FsName, NamePrefix, NfsVersions};

/// The keys of a settings table as the config file spells them.
fn keys(v: Value) -> Vec<String> {
    match v {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The document `schema` prints.
pub fn document() -> Value {
    let settings = Settings {
        arrays: vec![ArraySettings::default()],
        ..Default::default()
    };
    let mut top = serde_json::to_value(&settings).expect("settings serialise");
    // Every top-level key, the tables' names included.
    let top_keys = keys(top.clone());
    let section = |top: &mut Value, name: &str| top.as_object_mut().and_then(|m| m.remove(name));
    // The tables' own keys come from their sections below.
    let arrays = section(&mut top, "array");
    let timeouts = section(&mut top, "timeouts");
    let limits = section(&mut top, "limits");
    let log = section(&mut top, "log");
    let array = arrays
        .and_then(|a| a.as_array().and_then(|a| a.first().cloned()))
        .unwrap_or(Value::Null);
    let pattern = |p: &str, rule: &str| json!({"pattern": p, "rule": rule});
    let versions: Vec<String> = [NfsVersions::V3, NfsVersions::V41, NfsVersions::Both]
        .iter()
        .map(|v| v.to_string())
        .collect();
    json!({
        "config": {
            "": top_keys,
            "array": keys(array),
            "timeouts": keys(timeouts.unwrap_or(Value::Null)),
            "limits": keys(limits.unwrap_or(Value::Null)),
            "log": keys(log.unwrap_or(Value::Null)),
        },
        "rules": {
            "driverName": pattern(rules::DRIVER_NAME_PATTERN, rules::DRIVER_NAME_RULE),
            "arrayName": pattern(ArrayName::PATTERN, ArrayName::RULE),
            "namePrefix": pattern(NamePrefix::PATTERN, NamePrefix::RULE),
            "fileSystemName": pattern(FsName::PATTERN, FsName::RULE),
            "rootOwner": pattern(rules::ROOT_OWNER_PATTERN, "uid:gid in decimal, each at most 4294967294"),
            "rootMode": pattern(rules::ROOT_MODE_PATTERN, "octal permission bits, at most 7777"),
            "objectName": pattern(rules::OBJECT_NAME_PATTERN, "a Kubernetes object name (DNS subdomain)"),
            "nfsVersions": {"enum": versions},
        },
        "storageClassParameters": VOLUME_KEYS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_section_and_rule() {
        let d = document();
        for section in ["", "array", "timeouts", "limits", "log"] {
            assert!(!d["config"][section].as_array().unwrap().is_empty(), "{section}");
        }
        assert!(
            d["config"][""]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "driver_name")
        );
        assert!(
            !d["config"][""].as_array().unwrap().iter().any(|k| k == "config"),
            "not a file key"
        );
        assert!(
            d["config"]["array"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "management_url")
        );
        assert_eq!(d["rules"]["rootMode"]["pattern"], rules::ROOT_MODE_PATTERN);
        assert_eq!(d["rules"]["nfsVersions"]["enum"], json!(["3", "4.1", "3,4.1"]));
    }
}
