//! StorageClass (and VolumeSnapshotClass) parameters, parsed into typed
//! structs. Unknown keys are refused, except the `csi.storage.k8s.io/` ones
//! the sidecars add.

use std::collections::HashMap;

use crate::config::{ArrayConfig, Config};
use crate::error::Error;
use crate::volume::exports::{known_option, validate_export_rules};
use crate::volume::rules;
use crate::volume::{
    ArrayName, DeletePolicy, ExportRecord, Host, NamePrefix, NfsVersions, NodeOptions, PolicyName, Selector,
};

/// How the file system is exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Export {
    Rules(String),
    Policy(PolicyName),
    /// `exportTo: nodes`: created with no export at all; ControllerPublish
    /// adds one rule per node with these options (rw/ro comes from the
    /// access mode), ControllerUnpublish removes it.
    Nodes {
        options: String,
    },
}

/// The options of a node's rule when the class gives none.
pub(crate) const DEFAULT_NODE_OPTIONS: &str = "root_squash";

/// Checks `exportOptions`: export-rule options without rw/ro (the access
/// mode decides those) and without a client.
pub(crate) fn parse_export_options(v: &str) -> Result<String, Error> {
    let bad = |why: &str| invalid("exportOptions", v, why);
    if v.is_empty() {
        return Err(bad(
            "expected options such as root_squash or no_root_squash,anonuid=1000",
        ));
    }
    for opt in v.split(',') {
        if opt == "rw" || opt == "ro" {
            return Err(bad(
                "rw and ro come from the volume's access mode; leave them out",
            ));
        }
        if !known_option(opt) {
            return Err(bad(&format!(
                "unknown option {opt:?}; options: root_squash, no_root_squash, all_squash, no_all_squash, secure, insecure, atime, noatime, fileid_32bit, no_fileid_32bit, anonuid=N, anongid=N, sec=sys|krb5|krb5i|krb5p"
            )));
        }
    }
    Ok(v.to_string())
}

/// `rootOwner`: the node's rule (the volume's root is chowned there).
fn parse_root_owner(v: &str) -> Result<(u32, u32), Error> {
    rules::parse_owner(v).map_err(|e| invalid_because("rootOwner", v, e))
}

/// `rootMode`: the node's rule.
fn parse_root_mode(v: &str) -> Result<u32, Error> {
    rules::parse_mode(v).map_err(|e| invalid_because("rootMode", v, e))
}

/// The parameters of a dynamic volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeParams {
    pub array: ArrayName,
    pub nfs_endpoint: Host,
    pub hard_limit: bool,
    pub nfs_v3: bool,
    pub nfs_v41: bool,
    pub export: Export,
    pub snapshot_directory: bool,
    pub default_user_quota: Option<i64>,
    pub default_group_quota: Option<i64>,
    pub delete_policy: DeletePolicy,
    pub name_prefix: NamePrefix,
    /// Owner and mode the node gives the root of the new (empty) volume at
    /// its first stage.
    pub root_owner: Option<(u32, u32)>,
    pub root_mode: Option<u32>,
}

impl VolumeParams {
    /// What the volume id records of the export (the array forgets it on a
    /// soft delete).
    pub(crate) fn export_record(&self) -> ExportRecord {
        ExportRecord {
            versions: NfsVersions::from_flags(self.nfs_v3, self.nfs_v41).unwrap_or_default(),
            to_nodes: matches!(self.export, Export::Nodes { .. }),
            options: match &self.export {
                Export::Nodes { options } => NodeOptions::of(options),
                _ => NodeOptions::default(),
            },
        }
    }
}

pub(crate) fn nfs_versions_text(v3: bool, v41: bool) -> String {
    match (v3, v41) {
        (true, true) => "3,4.1".into(),
        (true, false) => "3".into(),
        (false, true) => "4.1".into(),
        (false, false) => String::new(),
    }
}

pub(crate) const VOLUME_KEYS: &[&str] = &[
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
    "arraySelector",
    "exportTo",
    "exportOptions",
    "rootOwner",
    "rootMode",
];

/// The value of `array` that lets the driver choose.
pub(crate) const AUTO: &str = "auto";

/// True when the class lets the driver choose the array.
pub(crate) fn is_auto(params: &HashMap<String, String>) -> bool {
    match params.get("array") {
        Some(a) => a == AUTO,
        None => params.contains_key("arraySelector"),
    }
}

fn invalid(key: &str, value: &str, expected: &str) -> Error {
    Error::invalid_argument(format!("parameter {key}={value:?} is invalid: {expected}"))
}

/// [`invalid`] with the validator's typed error as the cause.
fn invalid_because(key: &str, value: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    invalid(key, value, &e.to_string()).because(e)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, Error> {
    match v {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(invalid(key, v, "expected true or false")),
    }
}

/// Why a quantity was refused; the text is the user's, quoted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QuantityError {
    #[error("{0:?} is not a quantity like 10Gi")]
    Malformed(String),
    #[error("{text:?} has an unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti or k, M, G, T)")]
    Suffix { text: String, suffix: String },
    #[error("{0:?} is too large")]
    TooLarge(String),
    #[error("{0:?} is not a whole number of bytes")]
    Fraction(String),
}

/// A Kubernetes resource quantity as bytes: `10Gi`, `500M`, `1e9`, `1024`.
pub(crate) fn parse_quantity(text: &str) -> Result<i64, QuantityError> {
    let malformed = || QuantityError::Malformed(text.to_string());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(malformed());
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
            let exp: i32 = s[1..].parse().map_err(|_| malformed())?;
            10f64.powi(exp)
        }
        _ => {
            return Err(QuantityError::Suffix {
                text: text.to_string(),
                suffix: suffix.to_string(),
            });
        }
    };
    let n: f64 = num.parse().map_err(|_| malformed())?;
    let bytes = n * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(QuantityError::TooLarge(text.to_string()));
    }
    if bytes.fract() != 0.0 {
        return Err(QuantityError::Fraction(text.to_string()));
    }
    Ok(bytes as i64)
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
    Err(Error::invalid_argument(format!(
        "unknown parameter(s) {}; valid keys: {}",
        unknown.join(", "),
        known.join(", ")
    )))
}

/// Picks the array a request names, or the default one.
pub(crate) fn select_array<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a ArrayConfig, Error> {
    match name {
        Some(n) => config.array(n).ok_or_else(|| {
            Error::invalid_argument(format!(
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
            .ok_or_else(|| Error::failed_precondition("no array is configured")),
    }
}

/// The keys a VolumeAttributesClass may change after creation
/// (ControllerModifyVolume, and CreateVolume's `mutable_parameters`). Each is
/// parsed by [`MutableParams::parse_present`], the parser the StorageClass
/// parameters go through too.
pub(crate) const MUTABLE_KEYS: &[&str] = &[
    "hardLimit",
    "snapshotDirectory",
    "defaultUserQuota",
    "defaultGroupQuota",
    "exportRules",
    "exportPolicy",
];

/// Refuses any key of `mutable` that may not change after creation, naming
/// it: a StorageClass key that is fixed at creation, or an unknown one.
pub(crate) fn check_mutable_keys(mutable: &HashMap<String, String>) -> Result<(), Error> {
    let mut keys: Vec<&str> = mutable.keys().map(String::as_str).collect();
    keys.sort_unstable();
    for k in keys {
        if MUTABLE_KEYS.contains(&k) {
            continue;
        }
        return Err(Error::invalid_argument(if VOLUME_KEYS.contains(&k) {
            format!(
                "parameter {k} cannot be changed after creation; mutable parameters: {}",
                MUTABLE_KEYS.join(", ")
            )
        } else {
            format!(
                "unknown mutable parameter {k}; mutable parameters: {}",
                MUTABLE_KEYS.join(", ")
            )
        }));
    }
    Ok(())
}

/// The parameters that can change after creation; `None` = not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MutableParams {
    pub hard_limit: Option<bool>,
    pub snapshot_directory: Option<bool>,
    /// Bytes; `Some(0)` removes the default quota.
    pub default_user_quota: Option<i64>,
    pub default_group_quota: Option<i64>,
    pub export: Option<Export>,
}

impl MutableParams {
    /// Parses the mutable keys `params` holds (other keys are left to the
    /// caller): the one parser for StorageClass and VolumeAttributesClass.
    pub(crate) fn parse_present(
        params: &HashMap<String, String>,
        array: &ArrayConfig,
    ) -> Result<Self, Error> {
        let get = |k: &str| params.get(k).map(String::as_str);
        let hard_limit = get("hardLimit").map(|v| parse_bool("hardLimit", v)).transpose()?;
        let snapshot_directory = get("snapshotDirectory")
            .map(|v| parse_bool("snapshotDirectory", v))
            .transpose()?;
        let quota = |k: &str| -> Result<Option<i64>, Error> {
            get(k)
                .map(|v| parse_quantity(v).map_err(|e| invalid_because(k, v, e)))
                .transpose()
        };
        let default_user_quota = quota("defaultUserQuota")?;
        let default_group_quota = quota("defaultGroupQuota")?;
        let export = match (get("exportRules"), get("exportPolicy")) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_argument(
                    "parameters exportRules and exportPolicy are exclusive; give one",
                ));
            }
            (Some(r), None) => {
                validate_export_rules(r, array.allow_wildcard_export)
                    .map_err(|e| invalid_because("exportRules", r, e))?;
                Some(Export::Rules(r.to_string()))
            }
            (None, Some(p)) => Some(Export::Policy(
                p.parse()
                    .map_err(|_| invalid("exportPolicy", p, PolicyName::RULE))?,
            )),
            (None, None) => None,
        };
        Ok(Self {
            hard_limit,
            snapshot_directory,
            default_user_quota,
            default_group_quota,
            export,
        })
    }

    /// ControllerModifyVolume's parameters: only mutable keys, each valid.
    pub fn parse(mutable: &HashMap<String, String>, array: &ArrayConfig) -> Result<Self, Error> {
        check_mutable_keys(mutable)?;
        Self::parse_present(mutable, array)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl VolumeParams {
    /// The parameters of a class that names its array (or none, for the
    /// default one). `array: auto` classes go through [`VolumeParams::candidates`].
    pub fn parse(params: &HashMap<String, String>, config: &Config) -> Result<Self, Error> {
        let mut all = Self::candidates(params, config)?;
        if all.len() != 1 || is_auto(params) {
            return Err(Error::invalid_argument(
                "this call needs one array; the class lets the driver choose (array: auto)",
            ));
        }
        Ok(all.remove(0))
    }

    /// The parameters on every array the class allows, validated on each:
    /// one for a class that names its array (or none), every configured
    /// array matching `arraySelector` for `array: auto`.
    pub fn candidates(params: &HashMap<String, String>, config: &Config) -> Result<Vec<Self>, Error> {
        check_keys(params, VOLUME_KEYS)?;
        let get = |k: &str| params.get(k).map(String::as_str);
        let selector = get("arraySelector")
            .map(|s| {
                s.parse::<Selector>()
                    .map_err(|e| invalid("arraySelector", s, &e.to_string()))
            })
            .transpose()?;
        let auto = match get("array") {
            Some(AUTO) => true,
            None => selector.is_some(),
            Some(_) if selector.is_some() => {
                return Err(Error::invalid_argument(
                    "parameter arraySelector needs array: auto (or no array parameter); a class that names its array has nothing to select",
                ));
            }
            Some(_) => false,
        };
        if !auto {
            return Ok(vec![Self::parse_on(params, select_array(config, get("array"))?)?]);
        }
        if let Some(e) = get("nfsEndpoint") {
            return Err(invalid(
                "nfsEndpoint",
                e,
                "names one array's data address; with array: auto each array's configured nfs_endpoint is used",
            ));
        }
        let selector = selector.unwrap_or_default();
        let matching: Vec<&ArrayConfig> = config
            .arrays
            .iter()
            .filter(|a| selector.matches(&a.labels))
            .collect();
        if matching.is_empty() {
            return Err(Error::invalid_argument(format!(
                "parameter arraySelector={:?} matches no configured array (arrays: {})",
                get("arraySelector").unwrap_or(""),
                config
                    .arrays
                    .iter()
                    .map(|a| format!("{} [{}]", a.name, a.labels))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        matching.into_iter().map(|a| Self::parse_on(params, a)).collect()
    }

    /// The parameters as they apply on `array`.
    fn parse_on(params: &HashMap<String, String>, array: &ArrayConfig) -> Result<Self, Error> {
        let get = |k: &str| params.get(k).map(String::as_str);
        let nfs_endpoint = match get("nfsEndpoint") {
            Some(e) => e.parse().map_err(|_| invalid("nfsEndpoint", e, Host::RULE))?,
            None => array.nfs_endpoint.clone().ok_or_else(|| {
                Error::failed_precondition(format!("array {} has no NFS endpoint configured", array.name))
            })?,
        };
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
        let mutable = MutableParams::parse_present(params, array)?;
        let hard_limit = mutable.hard_limit.unwrap_or(true);
        let to_nodes = match get("exportTo") {
            None | Some("rules") => false,
            Some("nodes") => true,
            Some(v) => return Err(invalid("exportTo", v, "expected rules or nodes")),
        };
        let export = match (to_nodes, mutable.export, get("exportOptions")) {
            (true, Some(_), _) => {
                return Err(Error::invalid_argument(
                    "exportTo: nodes builds the export rules per node; it cannot be combined with exportRules or exportPolicy",
                ));
            }
            (true, None, options) => Export::Nodes {
                options: options
                    .map(parse_export_options)
                    .transpose()?
                    .unwrap_or_else(|| DEFAULT_NODE_OPTIONS.to_string()),
            },
            (false, _, Some(o)) => {
                return Err(invalid("exportOptions", o, "only used with exportTo: nodes"));
            }
            (false, Some(e), None) => e,
            (false, None, None) => match &array.default_export_rules {
                Some(r) => Export::Rules(r.clone()),
                None => {
                    return Err(Error::invalid_argument(format!(
                        "no export rules: set exportRules or exportPolicy in the StorageClass, or default_export_rules for array {}",
                        array.name
                    )));
                }
            },
        };
        let snapshot_directory = mutable.snapshot_directory.unwrap_or(true);
        // 0 is "no default quota", the same as leaving the key out.
        let default_user_quota = mutable.default_user_quota.filter(|q| *q != 0);
        let default_group_quota = mutable.default_group_quota.filter(|q| *q != 0);
        let delete_policy = match get("deletePolicy") {
            None => DeletePolicy::Destroy,
            Some(v) => v
                .parse()
                .map_err(|()| invalid("deletePolicy", v, "expected destroy, eradicate or retain"))?,
        };
        let name_prefix = match get("namePrefix") {
            Some(p) => p
                .parse()
                .map_err(|_| invalid("namePrefix", p, NamePrefix::RULE))?,
            None => array.name_prefix.clone(),
        };
        let root_owner = get("rootOwner").map(parse_root_owner).transpose()?;
        let root_mode = get("rootMode").map(parse_root_mode).transpose()?;
        Ok(VolumeParams {
            root_owner,
            root_mode,
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

impl VolumeParams {
    /// CreateVolume's parameters with its `mutable_parameters` (from a
    /// VolumeAttributesClass) laid over them: the mutable ones win, an export
    /// given there replaces either export key of the StorageClass.
    pub fn parse_with_mutable(
        params: &HashMap<String, String>,
        mutable: &HashMap<String, String>,
        config: &Config,
    ) -> Result<Self, Error> {
        Self::parse(&with_mutable(params, mutable)?, config)
    }

    /// [`VolumeParams::candidates`] for a StorageClass's parameters with a
    /// VolumeAttributesClass's laid over them.
    pub fn candidates_with_mutable(
        params: &HashMap<String, String>,
        mutable: &HashMap<String, String>,
        config: &Config,
    ) -> Result<Vec<Self>, Error> {
        Self::candidates(&with_mutable(params, mutable)?, config)
    }
}

/// The StorageClass's parameters with the mutable ones laid over them (an
/// export given in either replaces the other's).
fn with_mutable(
    params: &HashMap<String, String>,
    mutable: &HashMap<String, String>,
) -> Result<HashMap<String, String>, Error> {
    if mutable.is_empty() {
        return Ok(params.clone());
    }
    check_mutable_keys(mutable)?;
    let mut merged = params.clone();
    if mutable.contains_key("exportRules") || mutable.contains_key("exportPolicy") {
        merged.remove("exportRules");
        merged.remove("exportPolicy");
    }
    merged.extend(mutable.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(merged)
}

/// VolumeSnapshotClass parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotParams {
    /// Eradicate on DeleteSnapshot (default), or only destroy (recoverable).
    pub eradicate: bool,
}

pub(crate) const SNAPSHOT_KEYS: &[&str] = &["deletePolicy"];

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
    use crate::config::{Mode, Settings};

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
        let args = Settings {
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
        assert_eq!(nfs_versions_text(v.nfs_v3, v.nfs_v41), "3,4.1");
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
        assert_eq!(v.export, Export::Policy("k8s-nodes".parse().unwrap()));
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
                Err(Error::InvalidArgument { message: m, .. }) => assert!(m.contains(needle), "{m}"),
                other => panic!("{kv:?}: {other:?}"),
            }
        }
        // No rules anywhere: a precise error, not a wildcard export.
        let c = config(None);
        match VolumeParams::parse(&p(&[]), &c) {
            Err(Error::InvalidArgument { message: m, .. }) => {
                assert!(m.contains("default_export_rules"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mutable_parameters_share_the_storageclass_parser() {
        let c = config(Some("10.0.0.0/16(rw)"));
        let a = c.default_array().unwrap();
        let m = MutableParams::parse(
            &p(&[
                ("hardLimit", "false"),
                ("snapshotDirectory", "true"),
                ("defaultUserQuota", "10Gi"),
                ("defaultGroupQuota", "0"),
                ("exportRules", "10.1.0.0/16(rw,root_squash)"),
            ]),
            a,
        )
        .unwrap();
        assert_eq!(m.hard_limit, Some(false));
        assert_eq!(m.snapshot_directory, Some(true));
        assert_eq!(m.default_user_quota, Some(10 << 30));
        assert_eq!(m.default_group_quota, Some(0));
        assert_eq!(
            m.export,
            Some(Export::Rules("10.1.0.0/16(rw,root_squash)".into()))
        );
        assert!(MutableParams::parse(&p(&[]), a).unwrap().is_empty());
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("bogus", "1")], "unknown mutable parameter bogus"),
            (&[("nfsVersions", "3")], "nfsVersions cannot be changed"),
            (&[("deletePolicy", "retain")], "deletePolicy cannot be changed"),
            (&[("defaultUserQuota", "-1Gi")], "defaultUserQuota"),
            (&[("defaultGroupQuota", "lots")], "defaultGroupQuota"),
            (&[("hardLimit", "maybe")], "hardLimit"),
            (&[("exportRules", "*(rw)")], "exportRules"),
            (&[("exportRules", "a(rw)"), ("exportPolicy", "p")], "exclusive"),
        ];
        for (kv, needle) in cases {
            match MutableParams::parse(&p(kv), a) {
                Err(Error::InvalidArgument { message: m, .. }) => assert!(m.contains(needle), "{kv:?}: {m}"),
                other => panic!("{kv:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn create_takes_mutable_parameters_over_the_storageclass() {
        let c = config(None);
        let sc = p(&[("exportPolicy", "k8s-nodes"), ("defaultUserQuota", "1Gi")]);
        let vac = p(&[("exportRules", "10.0.0.0/8(rw)"), ("defaultUserQuota", "10Gi")]);
        let v = VolumeParams::parse_with_mutable(&sc, &vac, &c).unwrap();
        assert_eq!(v.export, Export::Rules("10.0.0.0/8(rw)".into()));
        assert_eq!(v.default_user_quota, Some(10 << 30));
        assert!(VolumeParams::parse_with_mutable(&sc, &p(&[("namePrefix", "x")]), &c).is_err());
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
