//! StorageClass (and VolumeSnapshotClass) parameters, parsed into typed
//! structs. Unknown keys are refused, except the `csi.storage.k8s.io/` ones
//! the sidecars add.

use std::collections::HashMap;

use crate::config::{ArrayConfig, Config, validate_host, validate_name_prefix};
use crate::error::Error;

/// What DeleteVolume does with the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletePolicy {
    /// Soft delete: destroyed, recoverable until the array eradicates it.
    Destroy,
    /// Destroyed and eradicated at once: the data is gone.
    Eradicate,
    /// Left untouched on the array.
    Retain,
}

impl DeletePolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "destroy" => Some(Self::Destroy),
            "eradicate" => Some(Self::Eradicate),
            "retain" => Some(Self::Retain),
            _ => None,
        }
    }
}

/// How the file system is exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Export {
    Rules(String),
    Policy(String),
}

/// The parameters of a dynamic volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeParams {
    pub array: String,
    pub nfs_endpoint: String,
    pub hard_limit: bool,
    pub nfs_v3: bool,
    pub nfs_v41: bool,
    pub export: Export,
    pub snapshot_directory: bool,
    pub default_user_quota: Option<i64>,
    pub default_group_quota: Option<i64>,
    pub delete_policy: DeletePolicy,
    pub name_prefix: String,
}

impl VolumeParams {
    /// The `nfsVersions` value these flags stand for.
    pub fn nfs_versions(&self) -> String {
        nfs_versions_text(self.nfs_v3, self.nfs_v41)
    }
}

pub fn nfs_versions_text(v3: bool, v41: bool) -> String {
    match (v3, v41) {
        (true, true) => "3,4.1".into(),
        (true, false) => "3".into(),
        (false, true) => "4.1".into(),
        (false, false) => String::new(),
    }
}

pub const VOLUME_KEYS: &[&str] = &[
    "array",
    "nfsEndpoint",
    "hardLimit",
    "nfsVersions",
    "exportRules",
    "exportPolicy",
    "snapshotDirectory",
    "defaultUserQuota",
    "defaultGroupQuota",
    "deletePolicy",
    "namePrefix",
];

fn invalid(key: &str, value: &str, expected: &str) -> Error {
    Error::InvalidArgument(format!("parameter {key}={value:?} is invalid: {expected}"))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, Error> {
    match v {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(invalid(key, v, "expected true or false")),
    }
}

/// A Kubernetes resource quantity as bytes: `10Gi`, `500M`, `1e9`, `1024`.
pub fn parse_quantity(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("{text:?} is not a quantity like 10Gi"));
    }
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with('e') || s.starts_with('E') => {
            let exp: i32 = s[1..]
                .parse()
                .map_err(|_| format!("{text:?} is not a quantity like 10Gi"))?;
            10f64.powi(exp)
        }
        _ => {
            return Err(format!(
                "{text:?} has an unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti or k, M, G, T)"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity like 10Gi"))?;
    let bytes = n * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    if bytes.fract() != 0.0 {
        return Err(format!("{text:?} is not a whole number of bytes"));
    }
    Ok(bytes as i64)
}

const RULE_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "root_squash",
    "no_root_squash",
    "all_squash",
    "no_all_squash",
    "secure",
    "insecure",
    "atime",
    "noatime",
    "fileid_32bit",
    "no_fileid_32bit",
];

/// Checks a FlashBlade export rules string (`client(opt,...) ...`). A client
/// that admits any host (`*`, or a /0 network) is refused unless allowed.
pub fn validate_export_rules(rules: &str, allow_wildcard: bool) -> Result<(), String> {
    if rules.trim().is_empty() {
        return Err("no rules given".into());
    }
    let (mut nets4, mut nets6) = (Vec::new(), Vec::new());
    for entry in rules.split_whitespace() {
        let (client, rest) = entry
            .split_once('(')
            .ok_or_else(|| format!("{entry:?} is not client(options)"))?;
        let opts = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("{entry:?} is missing its closing ')'"))?;
        match classify_client(client).map_err(|why| format!("{entry:?}: {why}"))? {
            RuleClient::Any if !allow_wildcard => {
                return Err(format!(
                    "{entry:?} admits every host; name the node network instead (or enable allow_wildcard_export)"
                ));
            }
            RuleClient::Net { v6, first, last } => {
                if v6 { &mut nets6 } else { &mut nets4 }.push((first, last));
            }
            _ => {}
        }
        let mut seen_access = false;
        for opt in opts.split(',') {
            let known = RULE_OPTIONS.contains(&opt)
                || opt
                    .strip_prefix("anonuid=")
                    .or_else(|| opt.strip_prefix("anongid="))
                    .is_some_and(|n| n.parse::<u32>().is_ok())
                || opt.strip_prefix("sec=").is_some_and(|s| {
                    s.split(':')
                        .all(|x| matches!(x, "sys" | "krb5" | "krb5i" | "krb5p"))
                });
            if !known {
                return Err(format!("{entry:?}: unknown option {opt:?}"));
            }
            if opt == "rw" || opt == "ro" {
                if seen_access {
                    return Err(format!("{entry:?}: give rw or ro once"));
                }
                seen_access = true;
            }
        }
    }
    if !allow_wildcard {
        for (nets, max, family) in [(nets4, u32::MAX as u128, "IPv4"), (nets6, u128::MAX, "IPv6")] {
            if covers_everything(nets, max) {
                return Err(format!(
                    "the rules' networks together admit every {family} host; name the node network instead (or enable allow_wildcard_export)"
                ));
            }
        }
    }
    Ok(())
}

/// What an export rule's client names.
#[derive(Debug, PartialEq, Eq)]
enum RuleClient {
    /// `*`.
    Any,
    /// An address or network, as an inclusive range (IPv4-mapped IPv6
    /// counts as IPv4).
    Net { v6: bool, first: u128, last: u128 },
    /// `@netgroup`.
    Netgroup,
    /// A host name, or a host-name pattern with `*` / `?` and at least one
    /// literal character (`*.example.com`).
    Host,
}

fn classify_client(client: &str) -> Result<RuleClient, String> {
    use std::net::IpAddr;
    let not_a_client = || format!("{client:?} is not an IP address, network, host name, @netgroup or *");
    if client.is_empty() {
        return Err("no client".into());
    }
    if client == "*" {
        return Ok(RuleClient::Any);
    }
    if let Some(group) = client.strip_prefix('@') {
        let ok = !group.is_empty()
            && group.len() <= 255
            && group
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        return if ok {
            Ok(RuleClient::Netgroup)
        } else {
            Err(not_a_client())
        };
    }
    let (addr, bits) = match client.split_once('/') {
        Some((a, b)) => {
            let ip: IpAddr = a.parse().map_err(|_| format!("{client:?} is not a network"))?;
            let bits: u32 = b
                .parse()
                .map_err(|_| format!("{client:?} has a bad prefix length"))?;
            (Some(ip), Some(bits))
        }
        None => (client.parse::<IpAddr>().ok(), None),
    };
    if let Some(ip) = addr {
        let (v6, value, width) = match ip {
            IpAddr::V4(v4) => (false, u32::from(v4) as u128, 32),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // ::ffff:a.b.c.d/n is the IPv4 network a.b.c.d/(n-96).
                Some(v4) if bits.is_none_or(|b| b >= 96) => (false, u32::from(v4) as u128, 32),
                _ => (true, u128::from(v6), 128),
            },
        };
        let mapped_shift = if !v6 && matches!(ip, IpAddr::V6(_)) { 96 } else { 0 };
        let bits = match bits {
            Some(b) if b > width + mapped_shift => {
                return Err(format!(
                    "{client:?}: prefix length {b} is larger than {}",
                    width + mapped_shift
                ));
            }
            Some(b) => b.saturating_sub(mapped_shift),
            None => width,
        };
        let host_bits = width - bits;
        let mask: u128 = match host_bits {
            0 => 0,
            128.. => u128::MAX,
            n => (1u128 << n) - 1,
        };
        let first = value & !mask;
        return Ok(RuleClient::Net {
            v6,
            first,
            last: first | mask,
        });
    }
    // A host name or a pattern: labels of letters, digits, '-', '*', '?'.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && l.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-*?".contains(&c))
    };
    if client.len() > 253 || !client.split('.').all(label_ok) {
        return Err(not_a_client());
    }
    if !client.bytes().any(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{client:?} is a pattern that matches every host name; name the hosts or networks instead"
        ));
    }
    Ok(RuleClient::Host)
}

/// True when the ranges together cover 0..=max.
fn covers_everything(mut ranges: Vec<(u128, u128)>, max: u128) -> bool {
    ranges.sort();
    let mut next = 0u128; // first address not yet covered
    for (first, last) in ranges {
        if first > next {
            return false;
        }
        if last >= max {
            return true;
        }
        next = next.max(last + 1);
    }
    false
}

/// Export policy names as FlashBlade accepts them.
fn valid_policy_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

fn check_keys(params: &HashMap<String, String>, known: &[&str]) -> Result<(), Error> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("csi.storage.k8s.io/") && !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(Error::InvalidArgument(format!(
        "unknown parameter(s) {}; valid keys: {}",
        unknown.join(", "),
        known.join(", ")
    )))
}

/// Picks the array a request names, or the default one.
pub fn select_array<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a ArrayConfig, Error> {
    match name {
        Some(n) => config.array(n).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "parameter array={n:?} names no configured array (configured: {})",
                config
                    .arrays
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }),
        None => config
            .default_array()
            .ok_or_else(|| Error::FailedPrecondition("no array is configured".into())),
    }
}

impl VolumeParams {
    pub fn parse(params: &HashMap<String, String>, config: &Config) -> Result<Self, Error> {
        check_keys(params, VOLUME_KEYS)?;
        let get = |k: &str| params.get(k).map(String::as_str);
        let array = select_array(config, get("array"))?;
        let nfs_endpoint = match get("nfsEndpoint") {
            Some(e) => {
                validate_host("nfsEndpoint", e)
                    .map_err(|_| invalid("nfsEndpoint", e, "expected a host name or IP address"))?;
                e.to_string()
            }
            None => array.nfs_endpoint.clone().ok_or_else(|| {
                Error::FailedPrecondition(format!("array {} has no NFS endpoint configured", array.name))
            })?,
        };
        let hard_limit = get("hardLimit").map_or(Ok(true), |v| parse_bool("hardLimit", v))?;
        let (nfs_v3, nfs_v41) = match get("nfsVersions") {
            None => (true, true),
            Some(v) => {
                let mut v3 = false;
                let mut v41 = false;
                for part in v.split(',').map(str::trim) {
                    match part {
                        "3" if !v3 => v3 = true,
                        "4.1" if !v41 => v41 = true,
                        _ => return Err(invalid("nfsVersions", v, "expected 3, 4.1 or 3,4.1")),
                    }
                }
                (v3, v41)
            }
        };
        let export = match (get("exportRules"), get("exportPolicy")) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(
                    "parameters exportRules and exportPolicy are exclusive; give one".into(),
                ));
            }
            (Some(r), None) => {
                validate_export_rules(r, array.allow_wildcard_export)
                    .map_err(|e| invalid("exportRules", r, &e))?;
                Export::Rules(r.to_string())
            }
            (None, Some(p)) => {
                if !valid_policy_name(p) {
                    return Err(invalid(
                        "exportPolicy",
                        p,
                        "expected a FlashBlade export policy name",
                    ));
                }
                Export::Policy(p.to_string())
            }
            (None, None) => match &array.default_export_rules {
                Some(r) => Export::Rules(r.clone()),
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "no export rules: set exportRules or exportPolicy in the StorageClass, or default_export_rules for array {}",
                        array.name
                    )));
                }
            },
        };
        let snapshot_directory =
            get("snapshotDirectory").map_or(Ok(true), |v| parse_bool("snapshotDirectory", v))?;
        let quota = |k: &str| -> Result<Option<i64>, Error> {
            match get(k) {
                None => Ok(None),
                Some(v) => {
                    let b = parse_quantity(v).map_err(|e| invalid(k, v, &e))?;
                    Ok(if b == 0 { None } else { Some(b) })
                }
            }
        };
        let default_user_quota = quota("defaultUserQuota")?;
        let default_group_quota = quota("defaultGroupQuota")?;
        let delete_policy = match get("deletePolicy") {
            None => DeletePolicy::Destroy,
            Some(v) => DeletePolicy::parse(v)
                .ok_or_else(|| invalid("deletePolicy", v, "expected destroy, eradicate or retain"))?,
        };
        let name_prefix = match get("namePrefix") {
            Some(p) => {
                validate_name_prefix("namePrefix", p).map_err(|e| invalid("namePrefix", p, &e.problem))?;
                p.to_string()
            }
            None => array.name_prefix.clone(),
        };
        Ok(VolumeParams {
            array: array.name.clone(),
            nfs_endpoint,
            hard_limit,
            nfs_v3,
            nfs_v41,
            export,
            snapshot_directory,
            default_user_quota,
            default_group_quota,
            delete_policy,
            name_prefix,
        })
    }
}

/// VolumeSnapshotClass parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotParams {
    /// Eradicate on DeleteSnapshot (default), or only destroy (recoverable).
    pub eradicate: bool,
}

pub const SNAPSHOT_KEYS: &[&str] = &["deletePolicy"];

impl SnapshotParams {
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, Error> {
        check_keys(params, SNAPSHOT_KEYS)?;
        let eradicate = match params.get("deletePolicy").map(String::as_str) {
            None | Some("eradicate") => true,
            Some("destroy") => false,
            Some(v) => return Err(invalid("deletePolicy", v, "expected eradicate or destroy")),
        };
        Ok(Self { eradicate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, ServeArgs};

    fn config(default_rules: Option<&str>) -> Config {
        // A fresh directory per call: the file only has to exist while the
        // configuration is validated (tests run in parallel, and users share /tmp).
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("api-token");
        std::fs::write(&token, "T-x").unwrap();
        let mut toml = format!(
            "[[array]]\nname = \"fb01\"\nmanagement_url = \"https://fb01\"\napi_token_file = \"{}\"\nnfs_endpoint = \"10.0.0.10\"\n",
            token.display()
        );
        if let Some(r) = default_rules {
            toml.push_str(&format!("default_export_rules = \"{r}\"\n"));
        }
        let args = ServeArgs {
            mode: Some(Mode::Controller),
            endpoint: Some("/tmp/x.sock".into()),
            ..Default::default()
        };
        Config::from_parts(&args, &toml).unwrap()
    }

    fn p(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let c = config(Some("10.0.0.0/16(rw,root_squash)"));
        let v = VolumeParams::parse(&p(&[("csi.storage.k8s.io/pvc/name", "claim-alice")]), &c).unwrap();
        assert_eq!(v.array, "fb01");
        assert_eq!(v.nfs_endpoint, "10.0.0.10");
        assert!(v.hard_limit && v.nfs_v3 && v.nfs_v41 && v.snapshot_directory);
        assert_eq!(v.export, Export::Rules("10.0.0.0/16(rw,root_squash)".into()));
        assert_eq!(v.delete_policy, DeletePolicy::Destroy);
        assert_eq!(v.name_prefix, "k8s");
        assert_eq!(v.nfs_versions(), "3,4.1");
    }

    #[test]
    fn every_key() {
        let c = config(None);
        let v = VolumeParams::parse(
            &p(&[
                ("array", "fb01"),
                ("nfsEndpoint", "fb01-data.example.com"),
                ("hardLimit", "false"),
                ("nfsVersions", "4.1"),
                ("exportPolicy", "k8s-nodes"),
                ("snapshotDirectory", "false"),
                ("defaultUserQuota", "10Gi"),
                ("defaultGroupQuota", "1G"),
                ("deletePolicy", "eradicate"),
                ("namePrefix", "hub"),
            ]),
            &c,
        )
        .unwrap();
        assert_eq!(v.nfs_endpoint, "fb01-data.example.com");
        assert!(!v.hard_limit && !v.nfs_v3 && v.nfs_v41 && !v.snapshot_directory);
        assert_eq!(v.export, Export::Policy("k8s-nodes".into()));
        assert_eq!(v.default_user_quota, Some(10 << 30));
        assert_eq!(v.default_group_quota, Some(1_000_000_000));
        assert_eq!(v.delete_policy, DeletePolicy::Eradicate);
        assert_eq!(v.name_prefix, "hub");
    }

    #[test]
    fn errors_name_the_parameter() {
        let c = config(Some("10.0.0.0/16(rw)"));
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("bogus", "1")], "bogus"),
            (&[("array", "fb99")], "array"),
            (&[("hardLimit", "yes")], "hardLimit"),
            (&[("nfsVersions", "4")], "nfsVersions"),
            (&[("nfsVersions", "3,3")], "nfsVersions"),
            (&[("exportRules", "*(rw)")], "exportRules"),
            (&[("exportRules", "10.0.0.0/8(rw")], "exportRules"),
            (&[("exportRules", "a(rw)"), ("exportPolicy", "p")], "exclusive"),
            (&[("exportPolicy", "bad name")], "exportPolicy"),
            (&[("defaultUserQuota", "10GB")], "defaultUserQuota"),
            (&[("deletePolicy", "delete")], "deletePolicy"),
            (&[("namePrefix", "-x")], "namePrefix"),
            (&[("nfsEndpoint", "-o x")], "nfsEndpoint"),
        ];
        for (kv, needle) in cases {
            match VolumeParams::parse(&p(kv), &c) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{kv:?}: {other:?}"),
            }
        }
        // No rules anywhere: a precise error, not a wildcard export.
        let c = config(None);
        match VolumeParams::parse(&p(&[]), &c) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("default_export_rules"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000);
        assert_eq!(parse_quantity("1024").unwrap(), 1024);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000);
        assert!(parse_quantity("0.5").is_err());
        assert!(parse_quantity("10GB").is_err());
        assert!(parse_quantity("-1").is_err());
        assert!(parse_quantity("").is_err());
        assert!(parse_quantity("99999Ei").is_err());
    }

    #[test]
    fn export_rules() {
        for ok in [
            "10.0.0.0/16(rw,root_squash)",
            "10.0.0.0/16(rw,no_root_squash,anonuid=1000,anongid=100) @hpc(ro) *.dom.com(ro,sec=krb5:krb5p)",
            "fd00::/64(rw)",
        ] {
            validate_export_rules(ok, false).unwrap();
        }
        for bad in [
            "*(rw)",
            "0.0.0.0/0(rw)",
            "10.0.0.0/8",
            "10.0.0.0/8(rw",
            "10.0.0.0/33(rw)",
            "x(rw,ro)",
            "x(bogus)",
            "-x(rw)",
            "",
            "a;b(rw)",
            // Ways around "admits every host" that once reached the array.
            "0.0.0.0/1(rw) 128.0.0.0/1(rw)",
            "0.0.0.0/2(rw) 64.0.0.0/2(rw) 128.0.0.0/1(rw)",
            "**(rw)",
            "*.*(rw)",
            "?(rw)",
            "::ffff:0.0.0.0/96(rw,no_root_squash)",
            "::/0(rw)",
            "::/1(rw) 8000::/1(rw)",
            "a:b(rw)",
            "@(rw)",
            "10.0.0.0/8(rw) ::ffff:0.0.0.0/97(rw) ::ffff:128.0.0.0/97(rw)",
        ] {
            assert!(validate_export_rules(bad, false).is_err(), "{bad}");
        }
        // Large but not everything; mapped addresses are IPv4.
        validate_export_rules("0.0.0.0/1(rw) 128.0.0.0/2(rw)", false).unwrap();
        validate_export_rules(
            "::ffff:10.0.0.0/104(rw) host-1.example.com(ro) 10.1.2.3(rw)",
            false,
        )
        .unwrap();
        assert_eq!(
            classify_client("::ffff:10.0.0.0/104").unwrap(),
            RuleClient::Net {
                v6: false,
                first: 10 << 24,
                last: (11 << 24) - 1
            }
        );
        validate_export_rules("*(rw,no_root_squash)", true).unwrap();
    }

    #[test]
    fn snapshot_params() {
        assert!(SnapshotParams::parse(&p(&[])).unwrap().eradicate);
        assert!(
            !SnapshotParams::parse(&p(&[("deletePolicy", "destroy")]))
                .unwrap()
                .eradicate
        );
        assert!(SnapshotParams::parse(&p(&[("x", "y")])).is_err());
    }
}
