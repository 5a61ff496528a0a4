//! Every setting can be given as a flag, as an environment variable and in
//! the config file, with the same effect, and a flag beats the variable,
//! which beats the file. The settings are enumerated from the command line's
//! own definition, so a setting added without a sample here fails the test.
//!
//! One test in its own binary: it sets process environment variables.

use std::collections::BTreeMap;

use clap::{Args, Command, FromArgMatches};
use flashblade_csi::config::{
    ArraySettings, Config, ConfigError, LimitSettings, LogSettings, Settings, TimeoutSettings,
};

/// (flag value, TOML value) for each setting, by its id (the field name).
fn samples() -> BTreeMap<&'static str, (&'static str, &'static str)> {
    BTreeMap::from([
        ("mode", ("controller", "\"controller\"")),
        ("endpoint", ("/tmp/other.sock", "\"/tmp/other.sock\"")),
        ("socket_mode", ("640", "\"640\"")),
        ("driver_name", ("other.csi.example", "\"other.csi.example\"")),
        ("node_id", ("n2", "\"n2\"")),
        ("kubelet_dir", ("/var/lib/k2", "\"/var/lib/k2\"")),
        ("local_export_root", ("/tmp", "\"/tmp\"")),
        ("local_export_client", ("10.0.0.5", "\"10.0.0.5\"")),
        ("default_array", ("fb01", "\"fb01\"")),
        ("kubeconfig", ("/etc/hostname", "\"/etc/hostname\"")),
        ("metrics_address", ("127.0.0.1:9808", "\"127.0.0.1:9808\"")),
        ("metrics_poll_interval", ("0s", "\"0s\"")),
        ("export_reconcile_interval", ("0s", "\"0s\"")),
        // [[array]]
        ("name", ("fb02", "\"fb02\"")),
        (
            "management_url",
            ("https://fb9.example.com", "\"https://fb9.example.com\""),
        ),
        ("api_token_file", ("/etc/hostname", "\"/etc/hostname\"")),
        ("ca_file", ("/etc/hostname", "\"/etc/hostname\"")),
        ("insecure_skip_tls_verify", ("true", "true")),
        ("nfs_endpoint", ("10.9.9.9", "\"10.9.9.9\"")),
        ("name_prefix", ("hub", "\"hub\"")),
        ("default_export_rules", ("10.0.0.0/8(rw)", "\"10.0.0.0/8(rw)\"")),
        ("allow_wildcard_export", ("true", "true")),
        ("extra_name_prefixes", ("a1,b2", "[\"a1\", \"b2\"]")),
        (
            "labels",
            ("rack=7b,env=prod", "{ rack = \"7b\", env = \"prod\" }"),
        ),
        // [timeouts]
        ("array_request", ("7s", "\"7s\"")),
        ("rpc", ("61s", "\"61s\"")),
        ("mount", ("31s", "\"31s\"")),
        ("unmount", ("21s", "\"21s\"")),
        ("stats", ("6s", "\"6s\"")),
        ("probe", ("4s", "\"4s\"")),
        ("shutdown_grace", ("9s", "\"9s\"")),
        // [limits]
        ("max_array_requests", ("5", "5")),
        // [log]
        ("format", ("json", "\"json\"")),
        ("filter", ("debug", "\"debug\"")),
    ])
}

fn ids<T: Args>() -> Vec<String> {
    T::augment_args(Command::new("x"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

const BASE: &[(&str, &str)] = &[
    ("mode", "\"node\""),
    ("endpoint", "\"/tmp/base.sock\""),
    ("node_id", "\"n1\""),
];

/// The baseline file with `key = value` added in its section.
fn file_with(section: Option<&str>, key: &str, value: &str) -> String {
    let mut root: BTreeMap<&str, String> = BASE.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let mut tail = String::new();
    match section {
        None => {
            root.insert(key, value.to_string());
        }
        Some("array") => {
            tail.push_str("[[array]]\n");
            if key != "name" {
                tail.push_str("name = \"default\"\n");
            }
            tail.push_str(&format!("{key} = {value}\n"));
        }
        Some(s) => tail.push_str(&format!("[{s}]\n{key} = {value}\n")),
    }
    let mut text: String = root.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    text.push_str(&tail);
    text
}

fn parse(argv: &[String]) -> Settings {
    let cmd = Settings::augment_args(Command::new("t").no_binary_name(true));
    Settings::from_arg_matches(&cmd.try_get_matches_from(argv).unwrap()).unwrap()
}

fn load(argv: &[String], file: &str) -> Result<Config, ConfigError> {
    Config::from_parts(&parse(argv), file)
}

fn base_file() -> String {
    BASE.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

#[test]
fn every_setting_from_every_source() {
    let samples = samples();
    let mut section: BTreeMap<String, Option<&str>> = BTreeMap::new();
    for id in ids::<ArraySettings>() {
        section.insert(id, Some("array"));
    }
    for (s, list) in [
        ("timeouts", ids::<TimeoutSettings>()),
        ("limits", ids::<LimitSettings>()),
        ("log", ids::<LogSettings>()),
    ] {
        for id in list {
            section.insert(id, Some(s));
        }
    }
    let cmd = Settings::augment_args(Command::new("x"));
    let baseline = load(&[], &base_file()).expect("the baseline is valid");
    let mut checked = 0;
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "config" {
            continue; // names the file itself; see Config::load's tests
        }
        let (flag_value, toml_value) = *samples
            .get(id)
            .unwrap_or_else(|| panic!("setting {id} has no sample in tests/settings.rs: add one"));
        let long = arg
            .get_long()
            .unwrap_or_else(|| panic!("setting {id} has no --flag"));
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("setting --{long} has no environment variable"))
            .to_owned();
        let sect = section.get(id).copied().flatten();

        let by_flag = load(&[format!("--{long}={flag_value}")], &base_file());
        // SAFETY: this binary runs this one test, on one thread.
        unsafe { std::env::set_var(&env, flag_value) };
        let by_env = load(&[], &base_file());
        unsafe { std::env::remove_var(&env) };
        let by_file = load(&[], &file_with(sect, id, toml_value));

        assert_eq!(by_flag, by_env, "--{long} and {env:?} differ");
        assert_eq!(by_flag, by_file, "--{long} and the file's {id} differ");
        assert_ne!(by_flag, Ok(baseline.clone()), "--{long} changed nothing");
        checked += 1;
    }
    assert_eq!(checked, samples.len(), "a sample names no setting");

    // Precedence: flag > environment > file, a boolean turned off included.
    let file = format!(
        "{}[[array]]\nname = \"default\"\ninsecure_skip_tls_verify = true\n",
        base_file()
    );
    unsafe { std::env::set_var("FLASHBLADE_CSI_NODE_ID", "n-env") };
    unsafe { std::env::set_var("FLASHBLADE_CSI_INSECURE_SKIP_TLS_VERIFY", "false") };
    let c = load(&[], &file).unwrap();
    assert_eq!(c.node_id.as_deref(), Some("n-env"));
    assert!(!c.arrays[0].insecure_skip_tls_verify);
    let c = load(
        &["--node-id=n-flag".into(), "--insecure-skip-tls-verify".into()],
        &file,
    )
    .unwrap();
    assert_eq!(c.node_id.as_deref(), Some("n-flag"));
    assert!(c.arrays[0].insecure_skip_tls_verify);
    unsafe { std::env::remove_var("FLASHBLADE_CSI_NODE_ID") };
    unsafe { std::env::remove_var("FLASHBLADE_CSI_INSECURE_SKIP_TLS_VERIFY") };
}
