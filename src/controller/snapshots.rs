//! Snapshot RPCs, the snapshot side of creating a volume from a snapshot or
//! from another volume, and in-place restore.

use std::collections::HashMap;

use super::ControllerService;
use super::params::{SnapshotParams, VolumeParams};
use super::volumes::{decode_token, encode_token};
use crate::csi;
use crate::error::{Error, Result, from_array};
use crate::flashblade::ArrayClient;
use crate::flashblade::filter::Filter;
use crate::flashblade::models::{FileSystem, Snapshot};
use crate::flashblade::ops::collect_page;
use crate::telemetry::record_volume_id;
use crate::volume::naming::{self, SNAPSHOT_SUFFIX_PREFIX};
use crate::volume::{ArrayName, DeletePolicy, SnapshotId, SnapshotIdError, VolumeId};

/// Suffix prefix of the short-lived snapshot behind a volume-to-volume clone;
/// distinct from [`SNAPSHOT_SUFFIX_PREFIX`] so it never shows as a CSI snapshot.
const CLONE_SUFFIX_PREFIX: &str = "csiclone-";

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn snapshot_message(
    array: &ArrayName,
    snap: &Snapshot,
    source_volume_id: String,
    size: i64,
    eradicate: bool,
) -> Result<csi::Snapshot> {
    Ok(csi::Snapshot {
        size_bytes: size,
        snapshot_id: SnapshotId::of(array, &snap.name, &snap.id, eradicate)
            .map_err(from_array)?
            .to_string(),
        source_volume_id,
        creation_time: Some(timestamp(snap.created)),
        // FlashBlade snapshots are complete the moment they exist.
        ready_to_use: true,
        group_snapshot_id: String::new(),
    })
}

/// What a volume-to-volume clone copies from.
pub(super) struct ClonePlan {
    pub source_fs: String,
    pub suffix: String,
}

impl ClonePlan {
    pub(crate) fn snapshot_name(&self) -> String {
        format!("{}.{}", self.source_fs, self.suffix)
    }
}

/// The snapshot a parsed id names: by name, or by the array's id for the
/// compact form. The caller checks the id matches.
async fn find_snapshot(client: &ArrayClient, sref: &SnapshotId) -> Result<Option<Snapshot>> {
    Ok(match sref.snap_name() {
        Some(name) => client.find_snapshot(&name).await?,
        None => client.find_snapshot_by_id(&sref.snap_id).await?.filter(|s| {
            s.suffix.as_deref() == Some(sref.suffix.as_str())
                || s.name.ends_with(&format!(".{}", sref.suffix))
        }),
    })
}

impl ControllerService {
    /// The snapshot a new volume is created from: checked to exist, to be on
    /// the target array, and not to be larger than the request.
    pub(super) async fn source_snapshot(
        &self,
        params: &VolumeParams,
        snapshot_id: &str,
        size: i64,
    ) -> Result<String> {
        let sref = snapshot_id.parse::<SnapshotId>().map_err(|why| {
            Error::not_found(format!("source snapshot {snapshot_id:?} does not exist ({why})")).because(why)
        })?;
        if sref.array != params.array {
            return Err(Error::invalid_argument(format!(
                "source snapshot is on array {} but the volume would be on {}; copies between arrays are not supported",
                sref.array, params.array
            )));
        }
        let client = self.client(&sref.array)?;
        let snap = find_snapshot(client, &sref)
            .await?
            .filter(|s| s.id == sref.snap_id && !s.destroyed)
            .ok_or_else(|| Error::not_found(format!("source snapshot {snapshot_id:?} does not exist")))?;
        if let Some(owner_name) = snap.owner.name.as_deref()
            && let Some(owner) = client.find_file_system(owner_name).await?
            && let Some(p) = owner.provisioned
            && size < p
        {
            return Err(Error::out_of_range(format!(
                "requested {size} bytes is smaller than the snapshot's volume ({p} bytes)"
            )));
        }
        Ok(snap.name)
    }

    /// Checks a clone source volume and names the intermediate snapshot
    /// (deterministic, so a retried CreateVolume reuses it).
    pub(super) async fn clone_plan(
        &self,
        params: &VolumeParams,
        volume_id: &str,
        new_name: &str,
        size: i64,
    ) -> Result<ClonePlan> {
        let (vref, array, fs) = self.resolve_volume(volume_id).await?;
        if matches!(vref, VolumeId::Static { .. }) {
            return Err(Error::invalid_argument(format!(
                "source volume {volume_id} is an imported (static) file system; cloning it is not supported"
            )));
        }
        if array != params.array {
            return Err(Error::invalid_argument(format!(
                "source volume is on array {array} but the volume would be on {}; copies between arrays are not supported",
                params.array
            )));
        }
        if let Some(p) = fs.provisioned
            && size < p
        {
            return Err(Error::out_of_range(format!(
                "requested {size} bytes is smaller than the source volume ({p} bytes)"
            )));
        }
        let hash = naming::snapshot_suffix_for(new_name);
        Ok(ClonePlan {
            source_fs: fs.name,
            suffix: format!("{CLONE_SUFFIX_PREFIX}{}", &hash[SNAPSHOT_SUFFIX_PREFIX.len()..]),
        })
    }

    /// Finds or makes the intermediate snapshot of a clone.
    pub(super) async fn ensure_clone_snapshot(&self, array: &str, plan: &ClonePlan) -> Result<String> {
        let client = self.client(array)?;
        if let Some(s) = client.find_snapshot(&plan.snapshot_name()).await?
            && !s.destroyed
        {
            return Ok(s.name);
        }
        Ok(client.create_snapshot(&plan.source_fs, &plan.suffix).await?.name)
    }

    /// Removes the intermediate snapshot of a clone (best effort: a failure
    /// is logged, and a retried CreateVolume removes it then).
    pub(super) async fn drop_temp_snapshot(&self, array: &str, name: &str) {
        let Ok(client) = self.client(array) else { return };
        match client.find_snapshot(name).await {
            Ok(Some(s)) => {
                if let Err(e) = client.delete_snapshot(&s, true).await {
                    tracing::warn!(snapshot = %name, error = %e, "could not remove the clone's intermediate snapshot");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(snapshot = %name, error = %e, "could not look up the clone's intermediate snapshot")
            }
        }
    }

    /// Live snapshots this driver made of `fs_name`.
    pub(super) async fn live_driver_snapshots(
        &self,
        client: &ArrayClient,
        fs_name: &str,
    ) -> Result<Vec<String>> {
        let page = client
            .list_snapshots(&Filter::driver_snapshots_of(fs_name), 100, None)
            .await?;
        Ok(page.items.into_iter().map(|s| s.name).collect())
    }

    pub(super) async fn create_snapshot_impl(
        &self,
        req: csi::CreateSnapshotRequest,
    ) -> Result<csi::CreateSnapshotResponse> {
        if req.name.is_empty() {
            return Err(Error::invalid_argument("name is required"));
        }
        if req.source_volume_id.is_empty() {
            return Err(Error::invalid_argument("source_volume_id is required"));
        }
        let params = SnapshotParams::parse(&req.parameters)?;
        record_volume_id(&req.source_volume_id);
        let _guard = self.guard(format!("snapshot:{}", req.name))?;
        let (vref, array, fs) = self.resolve_volume(&req.source_volume_id).await?;
        if matches!(vref, VolumeId::Static { .. }) {
            return Err(Error::invalid_argument(format!(
                "volume {} is an imported (static) file system; snapshots of it are not managed by the driver",
                req.source_volume_id
            )));
        }
        let client = self.client(&array)?;
        let suffix = naming::snapshot_suffix_for(&req.name);
        // The same CSI name must not name a snapshot of another volume.
        let same = client
            .list_snapshots(&Filter::snapshot_suffix(&suffix), 100, None)
            .await?;
        for s in &same.items {
            if s.owner.name.as_deref() != Some(fs.name.as_str()) {
                return Err(Error::already_exists(format!(
                    "snapshot name {:?} is already used for a snapshot of another volume ({})",
                    req.name, s.name
                )));
            }
        }
        let snap = match same
            .items
            .into_iter()
            .find(|s| s.owner.name.as_deref() == Some(fs.name.as_str()))
        {
            Some(s) if s.destroyed => {
                return Err(Error::failed_precondition(format!(
                    "snapshot {} of this name was deleted but not yet eradicated on the array; eradicate it or use another name",
                    s.name
                )));
            }
            Some(s) => s,
            None => client.create_snapshot(&fs.name, &suffix).await?,
        };
        tracing::info!(snapshot = %snap.name, "snapshot ready");
        Ok(csi::CreateSnapshotResponse {
            snapshot: Some(snapshot_message(
                &array,
                &snap,
                req.source_volume_id.clone(),
                fs.provisioned.unwrap_or(0),
                params.eradicate,
            )?),
        })
    }

    pub(super) async fn delete_snapshot_impl(
        &self,
        req: csi::DeleteSnapshotRequest,
    ) -> Result<csi::DeleteSnapshotResponse> {
        if req.snapshot_id.is_empty() {
            return Err(Error::invalid_argument("snapshot_id is required"));
        }
        let _guard = self.guard(format!("snapshot-id:{}", req.snapshot_id))?;
        let sref = match req.snapshot_id.parse::<SnapshotId>() {
            Ok(s) => s,
            // Nothing by that name can exist: deleting it is done.
            Err(SnapshotIdError::Malformed(why)) => {
                tracing::info!(%why, "DeleteSnapshot of a malformed id: nothing to do");
                return Ok(csi::DeleteSnapshotResponse {});
            }
            // An admin's snapshot (or one the id cannot pin down): never.
            Err(SnapshotIdError::NotOurs(why)) => return Err(Error::failed_precondition(why.clone())),
        };
        let client = self.arrays.get(&sref.array).ok_or_else(|| {
            Error::failed_precondition(format!(
                "snapshot {} lives on array {}, which this controller is not configured for; nothing was deleted",
                req.snapshot_id, sref.array
            ))
        })?;
        let Some(snap) = find_snapshot(client, &sref).await? else {
            return Ok(csi::DeleteSnapshotResponse {});
        };
        if snap.id != sref.snap_id {
            return Err(Error::failed_precondition(format!(
                "snapshot {} on array {} is not the one this id was made for; nothing was changed",
                snap.name, sref.array
            )));
        }
        client.delete_snapshot(&snap, sref.eradicate).await?;
        tracing::info!(snapshot = %snap.name, eradicated = sref.eradicate, "snapshot deleted");
        Ok(csi::DeleteSnapshotResponse {})
    }

    async fn owner_sizes(
        &self,
        client: &ArrayClient,
        snaps: &[&Snapshot],
    ) -> Result<HashMap<String, FileSystem>> {
        let mut owners = HashMap::new();
        for s in snaps {
            let Some(owner) = s.owner.name.as_deref() else {
                continue;
            };
            if owners.contains_key(owner) {
                continue;
            }
            if let Some(fs) = client.find_file_system(owner).await? {
                owners.insert(owner.to_string(), fs);
            }
        }
        Ok(owners)
    }

    pub(super) async fn list_snapshots_impl(
        &self,
        req: csi::ListSnapshotsRequest,
    ) -> Result<csi::ListSnapshotsResponse> {
        if req.max_entries < 0 {
            return Err(Error::invalid_argument("max_entries must not be negative"));
        }
        let empty = csi::ListSnapshotsResponse::default();
        let (start_idx, after) = if req.starting_token.is_empty() {
            (0, String::new())
        } else {
            decode_token(&req.starting_token)?
        };

        // One snapshot by id.
        if !req.snapshot_id.is_empty() {
            let Ok(sref) = req.snapshot_id.parse::<SnapshotId>() else {
                return Ok(empty);
            };
            let Some(client) = self.arrays.get(&sref.array) else {
                return Ok(empty);
            };
            let Some(snap) = find_snapshot(client, &sref).await? else {
                return Ok(empty);
            };
            if snap.destroyed || snap.id != sref.snap_id {
                return Ok(empty);
            }
            let owner = match snap.owner.name.as_deref() {
                Some(n) => client.find_file_system(n).await?,
                None => None,
            };
            let source = owner
                .as_ref()
                .map(|f| VolumeId::managed(&sref.array, &f.name, &f.id, DeletePolicy::Destroy))
                .transpose()
                .map_err(from_array)?
                .map(|v| v.to_string())
                .unwrap_or_default();
            if !req.source_volume_id.is_empty() && req.source_volume_id != source {
                return Ok(empty);
            }
            let mut msg = snapshot_message(
                &sref.array,
                &snap,
                source,
                owner.and_then(|f| f.provisioned).unwrap_or(0),
                sref.eradicate,
            )?;
            msg.snapshot_id = req.snapshot_id.clone();
            return Ok(csi::ListSnapshotsResponse {
                entries: vec![csi::list_snapshots_response::Entry { snapshot: Some(msg) }],
                next_token: String::new(),
            });
        }

        // All snapshots of one volume, or all of this driver's snapshots.
        let mut scope: Vec<(usize, ArrayName, Filter)> = Vec::new(); // (array idx, array, filter)
        if !req.source_volume_id.is_empty() {
            let Ok((_, array, fs)) = self.resolve_volume(&req.source_volume_id).await else {
                return Ok(empty);
            };
            let idx = self
                .config
                .arrays
                .iter()
                .position(|a| a.name == array)
                .unwrap_or(0);
            scope.push((idx, array, Filter::driver_snapshots_of(&fs.name)));
        } else {
            for (idx, a) in self.config.arrays.iter().enumerate() {
                scope.push((idx, a.name.clone(), Filter::driver_snapshots()));
            }
        }
        let max = if req.max_entries == 0 {
            usize::MAX
        } else {
            req.max_entries as usize
        };
        let mut out: Vec<csi::list_snapshots_response::Entry> = Vec::new();
        for (idx, array, filter) in scope {
            if idx < start_idx {
                continue;
            }
            let Some(client) = self.arrays.get(&array) else {
                continue;
            };
            let after_here = if idx == start_idx { after.as_str() } else { "" };
            let need = (max != usize::MAX).then(|| max - out.len());
            let all = collect_page(
                &filter,
                after_here,
                need,
                |s: &Snapshot| &s.name,
                |f, limit, token, sorted| async move {
                    client
                        .list_snapshots_sorted(&f, limit, token.as_deref(), sorted)
                        .await
                },
            )
            .await?;
            let page: Vec<&Snapshot> = all
                .iter()
                .filter(|s| idx != start_idx || after.is_empty() || s.name.as_str() > after.as_str())
                .take(max - out.len())
                .collect();
            let owners = self.owner_sizes(client, &page).await?;
            let more = all
                .iter()
                .filter(|s| idx != start_idx || after.is_empty() || s.name.as_str() > after.as_str())
                .count()
                > page.len();
            for s in &page {
                let owner = s.owner.name.as_deref().and_then(|o| owners.get(o));
                let source = if !req.source_volume_id.is_empty() {
                    req.source_volume_id.clone()
                } else {
                    owner
                        .map(|f| VolumeId::managed(&array, &f.name, &f.id, DeletePolicy::Destroy))
                        .transpose()
                        .map_err(from_array)?
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                };
                out.push(csi::list_snapshots_response::Entry {
                    snapshot: Some(snapshot_message(
                        &array,
                        s,
                        source,
                        owner.and_then(|f| f.provisioned).unwrap_or(0),
                        true,
                    )?),
                });
            }
            if more {
                let last = page.last().map(|s| s.name.clone()).unwrap_or_default();
                return Ok(csi::ListSnapshotsResponse {
                    entries: out,
                    next_token: encode_token(idx, &last),
                });
            }
            if out.len() == max && idx + 1 < self.config.arrays.len() && req.source_volume_id.is_empty() {
                return Ok(csi::ListSnapshotsResponse {
                    entries: out,
                    next_token: encode_token(idx + 1, ""),
                });
            }
        }
        Ok(csi::ListSnapshotsResponse {
            entries: out,
            next_token: String::new(),
        })
    }

    /// Restores a volume in place from one of its own snapshots: the volume's
    /// content becomes the snapshot's, and data written since is discarded.
    pub(crate) async fn restore_volume(&self, volume_id: &str, snapshot_id: &str) -> Result<FileSystem> {
        let _guard = self.guard(format!("volume:{volume_id}"))?;
        let (vref, array, fs) = self.resolve_volume(volume_id).await?;
        if matches!(vref, VolumeId::Static { .. }) {
            return Err(Error::failed_precondition(format!(
                "volume {volume_id} is an imported (static) file system; the driver never changes it"
            )));
        }
        let sref = snapshot_id.parse::<SnapshotId>().map_err(|why| {
            Error::not_found(format!("snapshot {snapshot_id:?} does not exist ({why})")).because(why)
        })?;
        let client = self.client(&array)?;
        let snap = if sref.array == array {
            find_snapshot(client, &sref)
                .await?
                .filter(|s| s.id == sref.snap_id && !s.destroyed)
                .ok_or_else(|| Error::not_found(format!("snapshot {snapshot_id:?} does not exist")))?
        } else {
            return Err(Error::invalid_argument(format!(
                "snapshot {snapshot_id} is not a snapshot of volume {volume_id}"
            )));
        };
        if snap.owner.name.as_deref() != Some(fs.name.as_str()) {
            return Err(Error::invalid_argument(format!(
                "snapshot {snapshot_id} is not a snapshot of volume {volume_id}"
            )));
        }
        let restored = client.restore_file_system(&fs.name, &snap.name).await?;
        tracing::info!(fs = %fs.name, snapshot = %snap.name, "volume restored from snapshot");
        Ok(restored)
    }
}
