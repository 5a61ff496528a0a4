//! `flashblade-csi schema`: the settings and input rules this build
//! enforces, as JSON, so that what checks them outside Rust (the Helm
//! chart's values schema, the deploy checks) reads them from the binary
//! instead of copying them.

use clap::Args;
use serde_json::{Value, json};

use crate::config::{ArraySettings, LimitSettings, LogSettings, Settings, TimeoutSettings};
use crate::controller::params::{MUTABLE_KEYS, VOLUME_KEYS};
use crate::volume::rules;
use crate::volume::{ArrayName, FsName, NamePrefix, NfsVersions};

/// The keys of a settings table as the config file spells them.
fn keys(v: Value) -> Vec<String> {
    match v {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Each setting as `serve --help` and the config file know it: its flag,
/// environment variable, file key (`section.key`, or null when the file
/// cannot set it), help and default (the help's "(default ...)", if any).
/// The settings reference (docs/settings.md) is generated from these.
fn setting_list() -> Vec<Value> {
    let args = |cmd: clap::Command| -> Vec<clap::Arg> { cmd.get_arguments().cloned().collect() };
    let new = || clap::Command::new("settings");
    // The tables' flags, each under its section; the rest are top-level.
    let sections = [
        ("array", args(ArraySettings::augment_args(new()))),
        ("timeouts", args(TimeoutSettings::augment_args(new()))),
        ("limits", args(LimitSettings::augment_args(new()))),
        ("log", args(LogSettings::augment_args(new()))),
    ];
    let top_keys = keys(serde_json::to_value(Settings::default()).expect("settings serialise"));
    args(Settings::augment_args(new()))
        .iter()
        .map(|arg| {
            let id = arg.get_id().as_str();
            let section = sections
                .iter()
                .find(|(_, a)| a.iter().any(|x| x.get_id() == arg.get_id()))
                .map(|(name, _)| *name);
            let file_key = match section {
                Some(name) => Some(format!("{name}.{id}")),
                None => top_keys.iter().any(|k| k == id).then(|| id.to_string()),
            };
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            let default = help.split_once("(default").map(|(_, rest)| {
                rest.trim_start_matches(':')
                    .split([')', ';'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            });
            json!({
                "flag": arg.get_long().map(|l| format!("--{l}")),
                "env": arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                "fileKey": file_key,
                "help": help,
                "default": default,
            })
        })
        .collect()
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
        "settings": setting_list(),
        "storageClassParameters": VOLUME_KEYS,
        "volumeAttributesClassParameters": MUTABLE_KEYS,
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

    #[test]
    fn every_setting_has_its_flag_env_and_file_key() {
        let d = document();
        let settings = d["settings"].as_array().unwrap();
        let find = |flag: &str| settings.iter().find(|s| s["flag"] == flag).unwrap().clone();
        let t = find("--array-timeout");
        assert_eq!(t["env"], "FLASHBLADE_CSI_ARRAY_TIMEOUT");
        assert_eq!(t["fileKey"], "timeouts.array_request");
        assert_eq!(t["default"], "8s");
        assert_eq!(find("--array-url")["fileKey"], "array.management_url");
        assert_eq!(find("--driver-name")["fileKey"], "driver_name");
        assert_eq!(find("--config")["fileKey"], Value::Null, "not a file key");
        for s in settings {
            assert!(s["flag"].is_string() && s["env"].is_string(), "{s}");
            assert!(!s["help"].as_str().unwrap().is_empty(), "{s}");
        }
    }
}
