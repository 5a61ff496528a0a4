//! `recover`: soft-deleted volumes, their time left before the array
//! eradicates them, and recovery of one — destroyed=false, the NFS versions
//! and export mode its tombstone records turned back on, renamed back from
//! its tombstone when the name is free — with a static PersistentVolume and
//! claim that give it back to a user's claim name. What the array keeps
//! through a soft delete (size, hard limit, range export rules, quotas, the
//! root directory's owner and mode) is left as it is.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::manifest::{BoundPair, attributes};
use super::render::{bytes, duration, table, utc, yaml};
use super::volumes::list_array;
use super::{AdminError, Output, Report, Session};
use crate::cluster::ClaimName;
use crate::context;
use crate::controller::params::{DEFAULT_NODE_OPTIONS, parse_export_options};
use crate::flashblade::filter::Filter;
use crate::flashblade::models::FileSystem;
use crate::volume::naming::{tombstone_of, tombstone_record, untombstone};
use crate::volume::{ArrayName, DeletePolicy, ExportRecord, NfsVersions, NodeOptions, VolumeId};

/// One soft-deleted volume.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub array: String,
    /// Its name on the array now (a tombstone on REST 2.16+).
    pub file_system: String,
    /// Its name before deletion, when known.
    pub original_name: Option<String>,
    /// Unix seconds, when the tombstone tells.
    pub deleted_at: Option<i64>,
    pub eradicated_in_s: i64,
    pub provisioned: Option<i64>,
    pub used: i64,
}

fn deleted(array: &str, fs: &FileSystem) -> Deleted {
    let (original, at) = match untombstone(&fs.name) {
        Some((o, secs)) => (o, Some(secs as i64)),
        None => (Some(fs.name.clone()), None),
    };
    Deleted {
        array: array.to_string(),
        file_system: fs.name.clone(),
        original_name: original,
        deleted_at: at,
        eradicated_in_s: fs.time_remaining.unwrap_or(0) / 1000,
        provisioned: fs.provisioned,
        used: fs.space.used(),
    }
}

/// `recover` without a volume: every soft-deleted volume of the driver.
pub async fn list(s: &Session) -> Result<Report, AdminError> {
    let mut rows = Vec::new();
    for array in s.arrays.keys() {
        let (fss, _) = list_array(s, array).await?;
        rows.extend(fss.iter().filter(|f| f.destroyed).map(|f| deleted(array, f)));
    }
    rows.sort_by_key(|r| r.eradicated_in_s);
    let text = match s.output {
        Output::Json => serde_json::to_string_pretty(&json!({"deleted": rows})).expect("serialisable") + "\n",
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.original_name
                            .clone()
                            .unwrap_or_else(|| "(long name: see FILE SYSTEM)".into()),
                        r.file_system.clone(),
                        r.deleted_at.map(utc).unwrap_or_default(),
                        duration(Duration::from_secs(r.eradicated_in_s.max(0) as u64)),
                        r.provisioned.map(bytes).unwrap_or_else(|| "unlimited".into()),
                        bytes(r.used),
                    ]
                })
                .collect();
            let mut t = table(
                &[
                    "VOLUME",
                    "FILE SYSTEM",
                    "DELETED (UTC)",
                    "TIME LEFT",
                    "PROVISIONED",
                    "USED",
                ],
                &cells,
            );
            t.push_str(&format!(
                "{} soft-deleted volumes; recover one with: flashblade-csi recover VOLUME [--claim NAMESPACE/NAME]\n",
                rows.len()
            ));
            t
        }
    };
    Ok(Report {
        stdout: text,
        ..Default::default()
    })
}

/// What `recover VOLUME` does besides recovering.
#[derive(Debug, Clone, Default)]
pub struct RecoverArgs {
    pub array: Option<String>,
    /// Give the volume to this claim: print (or apply) a PV and PVC.
    pub claim: Option<ClaimName>,
    pub storage_class: Option<String>,
    pub access_mode: String,
    /// NFS versions to turn back on; `None`: as the tombstone records.
    pub nfs_versions: Option<String>,
    /// A node-following volume's export options; `None`: root_squash.
    pub export_options: Option<String>,
    pub apply: bool,
}

/// What `recover VOLUME` did.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub array: String,
    pub file_system: String,
    pub volume_id: String,
    /// `recovered`, or `already live` for a repeat.
    pub action: String,
    pub renamed_back: bool,
    pub note: Option<String>,
    pub manifests: Option<Value>,
    pub applied: bool,
}

/// `recover VOLUME`: by its original file-system name, a tombstone name or
/// a deleted PV's volume handle.
pub async fn recover(s: &Session, volume: &str, args: &RecoverArgs) -> Result<Report, AdminError> {
    let versions: Option<NfsVersions> = match &args.nfs_versions {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|()| AdminError::Usage(format!("--nfs-versions {v:?}: expected 3, 4.1 or 3,4.1")))?,
        ),
    };
    if let Some(o) = &args.export_options {
        parse_export_options(o).map_err(|e| AdminError::BadArgument {
            what: "--export-options".into(),
            source: e.into(),
        })?;
    }
    let given_options = args
        .export_options
        .as_deref()
        .map(NodeOptions::of)
        .unwrap_or_default();
    // The array and the name it had (a volume handle names both).
    let (array, name): (ArrayName, String) = match volume.parse::<VolumeId>() {
        Ok(id) if volume.contains('/') => (
            match id.array() {
                Some(a) => a.clone(),
                None => s.default_array()?.clone(),
            },
            id.fs_name().to_string(),
        ),
        _ => {
            let a = match &args.array {
                Some(a) => a
                    .parse()
                    .map_err(|_| AdminError::Usage(format!("--array {a:?} is not an array name")))?,
                None => s.default_array()?.clone(),
            };
            (a, volume.to_string())
        }
    };
    let client = s.client(&array)?;
    // The original name when `name` is itself a tombstone of a short name.
    let original = untombstone(&name)
        .and_then(|(o, _)| o)
        .unwrap_or_else(|| name.clone());
    let head: String = original.chars().take(40).collect();
    let mut candidates = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_file_systems_sorted(
                &Filter::name_starts_with(&head),
                None,
                1000,
                token.as_deref(),
                false,
            )
            .await?;
        candidates.extend(page.items);
        match page.continuation_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    let live = candidates
        .iter()
        .find(|f| f.name == original && !f.destroyed)
        .cloned();
    let mut dead: Vec<&FileSystem> = candidates
        .iter()
        .filter(|f| {
            f.destroyed
                && (f.name == name || f.name == original || tombstone_of(&original, &f.name).is_some())
        })
        .collect();
    // The newest deletion first.
    dead.sort_by_key(|f| std::cmp::Reverse(tombstone_of(&original, &f.name).unwrap_or(u64::MAX)));

    let mut note = None;
    let (fs, action, renamed_back, record) = match (dead.first(), live) {
        (None, Some(fs)) => {
            // A repeat; but a live volume another PV uses is not to be given away.
            let default = s
                .config
                .default_array()
                .map(|a| a.name.to_string())
                .unwrap_or_default();
            if args.claim.is_some()
                && let Some(pv) = s.facts().and_then(|f| f.pv_for_fs(&array, &default, &fs.name))
            {
                return Err(AdminError::Refused(format!(
                    "{} is live and PersistentVolume {} uses it; nothing was deleted under that name to recover",
                    fs.name, pv.name
                )));
            }
            // As it serves now; the flags the array holds are current.
            let record = ExportRecord {
                versions: NfsVersions::from_flags(
                    fs.nfs.v3_enabled.unwrap_or(false),
                    fs.nfs.v4_1_enabled.unwrap_or(false),
                )
                .or(versions)
                .unwrap_or_default(),
                to_nodes: args.export_options.is_some(),
                options: given_options,
            };
            (fs, "already live", false, record)
        }
        (None, None) => {
            return Err(AdminError::NotFound(format!(
                "no soft-deleted volume {original} on array {array} (eradicated, or never there); `flashblade-csi recover` lists what can be recovered"
            )));
        }
        (Some(d), live) => {
            if dead.len() > 1 {
                note = Some(format!(
                    "{} deleted copies of {original} exist; recovering the newest, {}",
                    dead.len(),
                    d.name
                ));
            }
            // What it was exported with: the tombstone's record (the array
            // switched the protocols off), --nfs-versions over it.
            let kept = tombstone_record(&d.name).filter(|_| d.name != original);
            let record = match (kept, versions) {
                (Some(r), Some(v)) => ExportRecord { versions: v, ..r },
                (Some(r), None) => r,
                (None, Some(v)) => ExportRecord {
                    versions: v,
                    to_nodes: args.export_options.is_some(),
                    options: given_options,
                },
                (None, None) => {
                    return Err(AdminError::Usage(format!(
                        "{} keeps no record of its NFS versions (it was deleted without a tombstone name: REST before 2.16, or by another tool); give --nfs-versions (3, 4.1 or 3,4.1), and --export-options if it was exported to nodes; nothing was changed",
                        d.name
                    )));
                }
            };
            let fs = client.recover_file_system(d).await?;
            let (v3, v41) = record.versions.flags();
            let mut nfs = json!({"v3_enabled": v3, "v4_1_enabled": v41});
            if record.to_nodes {
                // Rules of nodes that used it before are stale: a node's
                // rule comes back when a pod there needs it.
                nfs["rules"] = json!("");
            }
            let mut body = json!({"nfs": nfs});
            let mut renamed = false;
            if fs.name != original {
                if live.is_none() {
                    body["name"] = json!(original);
                    renamed = true;
                } else {
                    note = Some(format!(
                        "the name {original} is taken by a live file system, so the recovered one keeps the name {}",
                        fs.name
                    ));
                }
            }
            let fs = client
                .patch_file_system(&fs.id, body, vec![], format!("re-enable file system {}", fs.name))
                .await?;
            (fs, "recovered", renamed, record)
        }
    };
    // The options: given, else as recorded; a record of "others" cannot
    // say which.
    let options = args
        .export_options
        .clone()
        .or_else(|| record.options.text().map(str::to_string));
    if record.to_nodes && options.is_none() {
        let n = format!(
            "its class exported it to nodes with options the record does not keep: exported with the default options ({DEFAULT_NODE_OPTIONS}); give --export-options to use the class's"
        );
        note = Some(match note {
            Some(before) => format!("{before}; {n}"),
            None => n,
        });
    }
    let record = ExportRecord {
        options: options.as_deref().map(NodeOptions::of).unwrap_or_default(),
        ..record
    };
    let volume_id = VolumeId::managed(&array, &fs.name, &fs.id, DeletePolicy::Destroy)
        .map_err(|e| AdminError::Unusable {
            what: format!("{} cannot carry a volume id", fs.name),
            source: e.into(),
        })?
        .with_export(record)
        .to_string();

    let mut manifests = None;
    let mut applied = false;
    if let Some(claim) = &args.claim {
        if let Some(existing) = s.facts().and_then(|f| f.pvc(claim)) {
            return Err(AdminError::Refused(format!(
                "claim {claim} already exists (bound to {}); delete it first or give another --claim — the volume was {action} and stays as it is",
                existing.volume_name.as_deref().unwrap_or("nothing")
            )));
        }
        let export = RecoveredExport {
            record,
            options: options.as_deref(),
        };
        let m = manifest(s, &array, &fs, &volume_id, claim, args, export);
        if args.apply {
            let cluster = s.cluster.as_ref().ok_or_else(|| {
                AdminError::Refused(format!(
                    "--apply needs the cluster, which could not be reached; the volume was {action}: apply the manifests printed with --output json by hand"
                ))
            })?;
            // Built here, so a failure is a bug; said, not a panic, as adopt does.
            let built = |what: &str, e: serde_json::Error| AdminError::Failed {
                what: format!("building the {what} for {}", fs.name),
                source: e.into(),
            };
            let pv = serde_json::from_value(m["pv"].clone()).map_err(|e| built("PersistentVolume", e))?;
            let pvc = serde_json::from_value(m["pvc"].clone()).map_err(|e| built("claim", e))?;
            cluster.create_pv_and_claim(&pv, &pvc).await?;
            applied = true;
        }
        manifests = Some(m);
    }
    let r = Recovered {
        array: array.to_string(),
        file_system: fs.name.clone(),
        volume_id,
        action: action.into(),
        renamed_back,
        note,
        manifests,
        applied,
    };
    let text = match s.output {
        Output::Json => serde_json::to_string_pretty(&r).expect("serialisable") + "\n",
        Output::Table => {
            let mut t = format!("{}: {} (volume id {})\n", r.file_system, r.action, r.volume_id);
            if let Some(n) = &r.note {
                t.push_str(&format!("note: {n}\n"));
            }
            if let Some(m) = &r.manifests {
                if r.applied {
                    t.push_str(&format!(
                        "created PersistentVolume {} and claim {}\n",
                        m["pv"]["metadata"]["name"].as_str().unwrap_or_default(),
                        args.claim.as_ref().map(|c| c.to_string()).unwrap_or_default()
                    ));
                } else {
                    t.push_str("# kubectl apply -f - <<'EOF'\n");
                    t.push_str(&yaml(&m["pv"]));
                    t.push_str("---\n");
                    t.push_str(&yaml(&m["pvc"]));
                    t.push_str("# EOF\n");
                }
            }
            t
        }
    };
    Ok(Report::new(text, s))
}

/// How the recovered volume is exported: the record, and the node rules'
/// options when known.
struct RecoveredExport<'a> {
    record: ExportRecord,
    options: Option<&'a str>,
}

/// A PV bound to exactly `claim` and that claim, for the recovered file
/// system. The PV keeps the data when released (Retain).
fn manifest(
    s: &Session,
    array: &ArrayName,
    fs: &FileSystem,
    volume_id: &str,
    claim: &ClaimName,
    args: &RecoverArgs,
    export: RecoveredExport<'_>,
) -> Value {
    let RecoveredExport { record, options } = export;
    let pv_name: String = format!("recovered-{}", fs.name)
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    let server = s
        .config
        .array(array)
        .and_then(|a| a.nfs_endpoint.as_ref())
        .map(|h| h.as_str());
    let mut attrs = attributes(array, &fs.name, server, &record.versions.to_string());
    if record.to_nodes {
        attrs.insert(context::EXPORT_TO.into(), json!("nodes"));
        attrs.insert(
            context::EXPORT_OPTIONS.into(),
            json!(options.unwrap_or(DEFAULT_NODE_OPTIONS)),
        );
    }
    let pair = BoundPair {
        pv_name,
        driver: s.config.driver_name.clone(),
        volume_handle: volume_id.to_string(),
        attributes: attrs,
        capacity: fs.provisioned.unwrap_or(0).to_string(),
        access_modes: vec![args.access_mode.clone()],
        reclaim_policy: "Retain".into(),
        storage_class: args.storage_class.clone().unwrap_or_default(),
        pv_annotations: [(
            "pv.kubernetes.io/provisioned-by".to_string(),
            s.config.driver_name.clone(),
        )]
        .into(),
        claim: claim.clone(),
        ..Default::default()
    };
    json!({"pv": pair.pv(), "pvc": pair.claim()})
}
