//! `restore`: a volume restored in place from one of its snapshots. Data
//! written since the snapshot is discarded, so `--dry-run` shows what would
//! go, and a volume attached to a node is refused without `--yes`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::render::{bytes, duration, utc};
use super::{AdminError, Output, Report, Session};
use crate::volume::SnapshotId;

/// What a restore does (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub array: String,
    pub file_system: String,
    pub volume_id: String,
    pub snapshot: String,
    /// Unix seconds.
    pub snapshot_created: i64,
    /// What the volume holds now (its data since the snapshot is discarded).
    pub used_now: i64,
    /// Nodes a VolumeAttachment says it is attached to.
    pub attached_to: Vec<String>,
    /// Whether the cluster could tell (false: unreachable, or no PV).
    pub cluster_checked: bool,
    pub dry_run: bool,
    pub restored: bool,
}

/// `restore`.
pub async fn restore(
    s: &Session,
    volume: &str,
    snapshot_id: &str,
    dry_run: bool,
    yes: bool,
) -> Result<Report, AdminError> {
    let t = s.resolve(volume).await?;
    let sref: SnapshotId = snapshot_id
        .parse()
        .map_err(|why| AdminError::NotFound(format!("snapshot {snapshot_id:?} does not exist ({why})")))?;
    let client = s.client(&t.array)?;
    let snap = client
        .find_snapshot_by_id(&sref.snap_id)
        .await?
        .filter(|x| !x.destroyed)
        .ok_or_else(|| AdminError::NotFound(format!("snapshot {snapshot_id} does not exist")))?;
    if snap.owner.name.as_deref() != Some(t.fs.name.as_str()) {
        return Err(AdminError::Usage(format!(
            "snapshot {snapshot_id} is a snapshot of {}, not of {}",
            snap.owner.name.as_deref().unwrap_or("?"),
            t.fs.name
        )));
    }
    let attached: Vec<String> = match (s.facts(), &t.pv) {
        (Some(f), Some(pv)) => f.attached_nodes(&pv.name).into_iter().map(String::from).collect(),
        _ => Vec::new(),
    };
    let cluster_checked = s.facts().is_some() && t.pv.is_some();
    let mut plan = RestorePlan {
        array: t.array.to_string(),
        file_system: t.fs.name.clone(),
        volume_id: t.volume_id.clone(),
        snapshot: snap.name.clone(),
        snapshot_created: snap.created / 1000,
        used_now: t.fs.space.used(),
        attached_to: attached.clone(),
        cluster_checked,
        dry_run,
        restored: false,
    };
    if !dry_run {
        if !attached.is_empty() && !yes {
            return Err(AdminError::Refused(format!(
                "{} is attached to node(s) {}: stop the user's server (delete the pod using {}) first, or pass --yes to restore under a running pod",
                t.fs.name,
                attached.join(", "),
                t.claim
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "it".into())
            )));
        }
        if !cluster_checked && !yes {
            return Err(AdminError::Refused(format!(
                "cannot tell whether {} is in use ({}); make sure no pod uses it, then pass --yes",
                t.fs.name,
                s.cluster_warning()
                    .unwrap_or_else(|| "no PersistentVolume of this driver names it".into())
            )));
        }
        s.service.restore_volume(&t.volume_id, snapshot_id).await?;
        plan.restored = true;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let age = duration(Duration::from_secs((now - plan.snapshot_created).max(0) as u64));
    let text = match s.output {
        Output::Json => serde_json::to_string_pretty(&plan).expect("serialisable") + "\n",
        Output::Table => {
            let mut t = String::new();
            if dry_run {
                t.push_str("DRY RUN: nothing was changed.\n");
            }
            t.push_str(&format!(
                "{} {} from snapshot {} taken {} UTC ({age} ago).\n",
                plan.file_system,
                if dry_run {
                    "would be restored"
                } else {
                    "was restored"
                },
                plan.snapshot,
                utc(plan.snapshot_created)
            ));
            t.push_str(&format!(
                "{} everything written to it after the snapshot; it holds {} now.\n",
                if dry_run { "That discards" } else { "Discarded:" },
                bytes(plan.used_now)
            ));
            if !plan.attached_to.is_empty() {
                t.push_str(&format!("Attached to: {}.\n", plan.attached_to.join(", ")));
            } else if plan.cluster_checked {
                t.push_str("No VolumeAttachment names it (a driver without attachRequired has none: check that no pod uses it).\n");
            }
            t
        }
    };
    let mut report = Report::new(text, s);
    if plan.restored {
        // Done as asked (--yes covered what the cluster could not tell).
        report.code = super::exit::OK;
    }
    Ok(report)
}
