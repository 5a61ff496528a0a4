//! `volumes`: the inventory of the driver's file systems joined with the
//! cluster's PVs and claims; `orphans`: file systems no PV references, and
//! PVs whose file system is missing or destroyed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::render::{bytes, duration, table};
use super::{AdminError, Output, Report, Session};
use crate::cluster::PvIndex;
use crate::flashblade::filter::Filter;
use crate::flashblade::models::FileSystem;
use crate::volume::VolumeId;
use crate::volume::naming::untombstone;

/// One file system of the driver.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeRow {
    pub array: String,
    pub file_system: String,
    pub pv: Option<String>,
    pub pvc: Option<String>,
    pub provisioned: Option<i64>,
    pub used: i64,
    /// Used as a percentage of the provisioned size (the hard quota when on).
    pub percent_of_quota: Option<f64>,
    pub hard_limit: bool,
    pub snapshots: usize,
    pub destroyed: bool,
    /// Seconds until the array eradicates it (destroyed only).
    pub eradicated_in_s: Option<i64>,
    /// For a soft-deleted volume renamed to a tombstone: its name before.
    pub original_name: Option<String>,
    /// The array's id of the file system (joins PVs by their handle).
    #[serde(skip)]
    pub fs_id: String,
}

/// Every file system with the array's driver prefixes, live or destroyed,
/// and the live snapshots per file-system name.
pub(crate) async fn list_array(
    s: &Session,
    array: &str,
) -> Result<(Vec<FileSystem>, BTreeMap<String, usize>), AdminError> {
    let Some(cfg) = s.config.array(array) else {
        return Ok(Default::default());
    };
    let client = s.client(array)?;
    let mut prefixes = vec![cfg.name_prefix.clone()];
    prefixes.extend(cfg.extra_name_prefixes.iter().cloned());
    let filter = Filter::name_prefixes(&prefixes);
    let progress = s.progress(&format!("{array}: listing file systems"), None);
    let mut fss = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_file_systems_sorted(&filter, None, 1000, token.as_deref(), false)
            .await?;
        progress.inc(page.items.len() as u64);
        fss.extend(page.items);
        match page.continuation_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    progress.set_message(&format!("{array}: counting snapshots"));
    let mut snaps: BTreeMap<String, usize> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = client.list_snapshots(&filter, 1000, token.as_deref()).await?;
        progress.inc(page.items.len() as u64);
        for snap in page.items.iter().filter(|x| !x.destroyed) {
            if let Some(owner) = &snap.owner.name {
                *snaps.entry(owner.clone()).or_default() += 1;
            }
        }
        match page.continuation_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    fss.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((fss, snaps))
}

fn row(
    s: &Session,
    pvs: Option<&PvIndex<'_>>,
    array: &str,
    fs: &FileSystem,
    snaps: &BTreeMap<String, usize>,
) -> VolumeRow {
    let default = s
        .config
        .default_array()
        .map(|a| a.name.to_string())
        .unwrap_or_default();
    let original = untombstone(&fs.name).map(|(orig, _)| orig);
    // A tombstone: the PV (if it is still there) names the old name, and
    // the id.
    let pv = pvs.and_then(|i| {
        i.pv_for_fs(array, &default, &fs.name)
            .or_else(|| i.pv_for_fs_id(&fs.id))
    });
    let used = fs.space.used();
    VolumeRow {
        array: array.to_string(),
        file_system: fs.name.clone(),
        pv: pv.map(|p| p.name.clone()),
        pvc: pv.and_then(|p| p.claim.as_ref()).map(|c| c.to_string()),
        provisioned: fs.provisioned,
        used,
        percent_of_quota: fs
            .provisioned
            .filter(|p| *p > 0)
            .map(|p| ((used as f64) * 1000.0 / p as f64).round() / 10.0),
        hard_limit: fs.hard_limit_enabled,
        snapshots: snaps.get(&fs.name).copied().unwrap_or(0),
        destroyed: fs.destroyed,
        fs_id: fs.id.clone(),
        eradicated_in_s: fs.destroyed.then(|| fs.time_remaining.unwrap_or(0) / 1000),
        original_name: original.flatten(),
    }
}

/// The inventory of every configured array.
pub async fn inventory(s: &Session) -> Result<Vec<VolumeRow>, AdminError> {
    let mut rows = Vec::new();
    let pvs = s.facts().map(|f| f.pv_index());
    for array in s.arrays.keys() {
        let (fss, snaps) = list_array(s, array).await?;
        rows.extend(fss.iter().map(|fs| row(s, pvs.as_ref(), array, fs, &snaps)));
    }
    Ok(rows)
}

fn state(r: &VolumeRow) -> String {
    if r.destroyed {
        format!(
            "destroyed, {} left",
            duration(Duration::from_secs(r.eradicated_in_s.unwrap_or(0).max(0) as u64))
        )
    } else {
        "live".into()
    }
}

/// `volumes`.
pub async fn volumes(s: &Session) -> Result<Report, AdminError> {
    let rows = inventory(s).await?;
    let text = match s.output {
        Output::Json => {
            serde_json::to_string_pretty(&serde_json::json!({"volumes": rows})).expect("serialisable") + "\n"
        }
        Output::Table => {
            let multi = s.arrays.len() > 1;
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut fs = r.file_system.clone();
                    if multi {
                        fs = format!("{}/{fs}", r.array);
                    }
                    if let Some(o) = &r.original_name {
                        fs = format!("{fs} (was {o})");
                    }
                    vec![
                        fs,
                        r.pv.clone().unwrap_or_default(),
                        r.pvc.clone().unwrap_or_default(),
                        r.provisioned.map(bytes).unwrap_or_else(|| "unlimited".into()),
                        bytes(r.used),
                        r.percent_of_quota.map(|p| format!("{p:.1}%")).unwrap_or_default(),
                        r.snapshots.to_string(),
                        state(r),
                    ]
                })
                .collect();
            let mut t = table(
                &[
                    "FILE SYSTEM",
                    "PV",
                    "PVC",
                    "PROVISIONED",
                    "USED",
                    "QUOTA%",
                    "SNAPSHOTS",
                    "STATE",
                ],
                &cells,
            );
            t.push_str(&format!("{} file systems\n", rows.len()));
            t
        }
    };
    Ok(Report::new(text, s))
}

/// A PV whose file system is missing or destroyed.
#[derive(Debug, Clone, Serialize)]
pub struct BrokenPv {
    pub pv: String,
    pub pvc: Option<String>,
    pub volume_handle: String,
    pub file_system: String,
    /// `missing`, `destroyed` or `replaced` (the name now has another id).
    pub problem: String,
    pub eradicated_in_s: Option<i64>,
}

/// `orphans`.
pub async fn orphans(s: &Session) -> Result<Report, AdminError> {
    let rows = inventory(s).await?;
    let Some(facts) = s.facts() else {
        // No cluster: the array side only, and say what is missing.
        let live: Vec<&VolumeRow> = rows.iter().filter(|r| !r.destroyed).collect();
        let text = match s.output {
            Output::Json => {
                serde_json::to_string_pretty(&serde_json::json!({
                    "complete": false,
                    "file_systems": live,
                }))
                .expect("serialisable")
                    + "\n"
            }
            Output::Table => {
                let cells: Vec<Vec<String>> = live
                    .iter()
                    .map(|r| vec![r.array.clone(), r.file_system.clone(), bytes(r.used)])
                    .collect();
                format!(
                    "The cluster could not be read: which of these file systems a PV references is unknown.\n{}",
                    table(&["ARRAY", "FILE SYSTEM", "USED"], &cells)
                )
            }
        };
        return Ok(Report::new(text, s));
    };

    let unreferenced: Vec<&VolumeRow> = rows.iter().filter(|r| !r.destroyed && r.pv.is_none()).collect();
    let by_name: BTreeMap<(String, String), &VolumeRow> = rows
        .iter()
        .map(|r| ((r.array.clone(), r.file_system.clone()), r))
        .collect();
    // Managed PVs are checked against the listing by the id their handle
    // records; only one the listing lacks costs an array request.
    let by_id: HashMap<(&str, &str), &VolumeRow> = rows
        .iter()
        .map(|r| ((r.array.as_str(), r.fs_id.as_str()), r))
        .collect();
    let default = s.default_array()?.to_string();
    let mut broken = Vec::new();
    let progress = s.progress("checking PersistentVolumes", Some(facts.pvs.len() as u64));
    let mut seen = BTreeSet::new();
    for pv in &facts.pvs {
        progress.inc(1);
        let Ok(id) = pv.volume_handle.parse::<VolumeId>() else {
            continue;
        };
        let array = id
            .array()
            .map(|a| a.to_string())
            .unwrap_or_else(|| default.clone());
        seen.insert(pv.name.clone());
        let fs_name = id.fs_name().to_string();
        let listed = match &id {
            VolumeId::Managed { fs_id, .. } => by_id.get(&(array.as_str(), fs_id.as_str())),
            VolumeId::Static { .. } => None,
        };
        let found: Option<(bool, Option<i64>)> = match (&id, by_name.get(&(array.clone(), fs_name.clone()))) {
            (VolumeId::Static { .. }, Some(r)) if !r.destroyed => continue,
            _ if listed.is_some() => listed.map(|r| (r.destroyed, r.eradicated_in_s)),
            _ => match s.arrays.get(array.as_str()) {
                None => None,
                Some(client) => match &id {
                    VolumeId::Managed { fs_id, .. } => client.find_file_system_by_id(fs_id).await?,
                    VolumeId::Static { .. } => client.find_file_system(&fs_name).await?,
                }
                .map(|fs| (fs.destroyed, fs.time_remaining.map(|t| t / 1000))),
            },
        };
        let (problem, left) = match &found {
            None => {
                // Same name, other id: not the volume this PV was made for.
                let reused = matches!(id, VolumeId::Managed { .. })
                    && by_name
                        .get(&(array.clone(), fs_name.clone()))
                        .is_some_and(|r| !r.destroyed);
                (if reused { "replaced" } else { "missing" }, None)
            }
            Some((true, left)) => ("destroyed", Some(left.unwrap_or(0))),
            Some(_) => continue,
        };
        broken.push(BrokenPv {
            pv: pv.name.clone(),
            pvc: pv.claim.as_ref().map(|c| c.to_string()),
            volume_handle: pv.volume_handle.clone(),
            file_system: fs_name,
            problem: problem.into(),
            eradicated_in_s: left,
        });
    }
    drop(progress);
    let text = match s.output {
        Output::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "complete": true,
                "file_systems_without_pv": unreferenced,
                "pvs_without_file_system": broken,
            }))
            .expect("serialisable")
                + "\n"
        }
        Output::Table => {
            let mut t = format!(
                "File systems that no PersistentVolume references: {}\n",
                unreferenced.len()
            );
            if !unreferenced.is_empty() {
                let cells: Vec<Vec<String>> = unreferenced
                    .iter()
                    .map(|r| {
                        vec![
                            r.array.clone(),
                            r.file_system.clone(),
                            r.provisioned.map(bytes).unwrap_or_else(|| "unlimited".into()),
                            bytes(r.used),
                            r.snapshots.to_string(),
                        ]
                    })
                    .collect();
                t.push_str(&table(
                    &["ARRAY", "FILE SYSTEM", "PROVISIONED", "USED", "SNAPSHOTS"],
                    &cells,
                ));
            }
            t.push_str(&format!(
                "\nPersistentVolumes whose file system is missing or destroyed: {}\n",
                broken.len()
            ));
            if !broken.is_empty() {
                let cells: Vec<Vec<String>> = broken
                    .iter()
                    .map(|b| {
                        let problem = match b.eradicated_in_s {
                            Some(left) => format!(
                                "{} ({} left)",
                                b.problem,
                                duration(Duration::from_secs(left.max(0) as u64))
                            ),
                            None => b.problem.clone(),
                        };
                        vec![
                            b.pv.clone(),
                            b.pvc.clone().unwrap_or_default(),
                            b.file_system.clone(),
                            problem,
                        ]
                    })
                    .collect();
                t.push_str(&table(&["PV", "PVC", "FILE SYSTEM", "PROBLEM"], &cells));
            }
            t
        }
    };
    Ok(Report::new(text, s))
}
