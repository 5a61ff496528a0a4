//! Volume RPCs: create (empty, from a snapshot, from a volume), delete,
//! expand, validate, list and capacity.

use std::collections::HashMap;

use super::params::{Export, VolumeParams, is_auto, nfs_versions_text, select_array};
use super::{ControllerService, DEFAULT_VOLUME_BYTES};
use crate::context;
use crate::csi;
use crate::error::{Error, Result, from_array};
use crate::flashblade::FileSystemSpec;
use crate::flashblade::filter::Filter;
use crate::flashblade::models::FileSystem;
use crate::flashblade::ops::{Created, collect_page};
use crate::telemetry::record_volume_id;
use crate::volume::access::check_capability;
use crate::volume::naming;
use crate::volume::{ArrayName, DeletePolicy, ExportRecord, FsName, NfsVersions, ObjectId, VolumeId};

/// Checks requested capabilities: mount volumes in any access mode; block
/// volumes are impossible on an NFS file system.
pub(super) fn check_capabilities(caps: &[csi::VolumeCapability]) -> Result<()> {
    if caps.is_empty() {
        return Err(Error::invalid_argument("volume_capabilities is required"));
    }
    for cap in caps {
        check_capability(cap).map_err(Error::invalid)?;
    }
    Ok(())
}

/// The bytes to provision for a capacity range.
pub(super) fn requested_bytes(range: Option<&csi::CapacityRange>) -> Result<i64> {
    let Some(r) = range else {
        return Ok(DEFAULT_VOLUME_BYTES);
    };
    if r.required_bytes < 0 || r.limit_bytes < 0 {
        return Err(Error::invalid_argument("capacity_range must not be negative"));
    }
    if r.limit_bytes > 0 && r.required_bytes > r.limit_bytes {
        return Err(Error::invalid_argument(format!(
            "capacity_range: required_bytes {} is larger than limit_bytes {}",
            r.required_bytes, r.limit_bytes
        )));
    }
    Ok(if r.required_bytes > 0 {
        r.required_bytes
    } else if r.limit_bytes > 0 {
        r.limit_bytes.min(DEFAULT_VOLUME_BYTES)
    } else {
        DEFAULT_VOLUME_BYTES
    })
}

fn fits(range: Option<&csi::CapacityRange>, bytes: i64) -> bool {
    range.is_none_or(|r| {
        (r.required_bytes == 0 || bytes >= r.required_bytes) && (r.limit_bytes == 0 || bytes <= r.limit_bytes)
    })
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_argument("name is required"));
    }
    if name.len() > 128 {
        return Err(Error::invalid_argument("name is longer than 128 bytes"));
    }
    if name.chars().any(
        |c| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}'),
    ) {
        return Err(Error::invalid_argument("name contains control characters"));
    }
    Ok(())
}

pub(super) fn volume_context(
    array: &str,
    server: &str,
    fs_name: &str,
    v3: bool,
    v41: bool,
) -> HashMap<String, String> {
    HashMap::from([
        (context::SERVER.to_string(), server.to_string()),
        (context::SHARE.to_string(), format!("/{fs_name}")),
        (context::NFS_VERSIONS.to_string(), nfs_versions_text(v3, v41)),
        (context::ARRAY.to_string(), array.to_string()),
        (context::FS_NAME.to_string(), fs_name.to_string()),
    ])
}

fn volume_response(
    params: &VolumeParams,
    fs: &FileSystem,
    source: Option<csi::VolumeContentSource>,
) -> Result<csi::CreateVolumeResponse> {
    Ok(csi::CreateVolumeResponse {
        volume: Some(csi::Volume {
            capacity_bytes: fs.provisioned.unwrap_or(0),
            volume_id: VolumeId::managed(&params.array, &fs.name, &fs.id, params.delete_policy)
                .map_err(from_array)?
                .with_export(params.export_record())
                .to_string(),
            volume_context: {
                let mut ctx = volume_context(
                    &params.array,
                    &params.nfs_endpoint,
                    &fs.name,
                    params.nfs_v3,
                    params.nfs_v41,
                );
                if let Export::Nodes { options } = &params.export {
                    ctx.insert(context::EXPORT_TO.into(), "nodes".into());
                    ctx.insert(context::EXPORT_OPTIONS.into(), options.clone());
                }
                if let Some((uid, gid)) = params.root_owner {
                    ctx.insert(context::ROOT_OWNER.into(), format!("{uid}:{gid}"));
                }
                if let Some(mode) = params.root_mode {
                    ctx.insert(context::ROOT_MODE.into(), format!("{mode:o}"));
                }
                ctx
            },
            content_source: source,
            accessible_topology: vec![],
        }),
    })
}

/// Opaque list paging token: `<array index>|<last name>`, hex encoded.
pub(super) fn encode_token(array_idx: usize, last: &str) -> String {
    format!("v1|{array_idx}|{last}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn decode_token(token: &str) -> Result<(usize, String)> {
    let bad = || {
        Error::aborted(format!(
            "starting_token {token:?} is not a token this driver issued"
        ))
    };
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        // The last name goes into an array filter: only name characters.
        (Some("v1"), Some(idx), Some(last))
            if last.len() <= 128
                && last
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) =>
        {
            Ok((idx.parse().map_err(|_| bad())?, last.to_string()))
        }
        _ => Err(bad()),
    }
}

impl ControllerService {
    /// An export policy a volume may use: the array speaks REST 2.3+ and has it.
    pub(super) async fn check_export_policy(
        &self,
        client: &crate::flashblade::ArrayClient,
        array: &str,
        policy: &crate::volume::PolicyName,
    ) -> Result<()> {
        if client.api_minor().await? < 3 {
            return Err(Error::invalid_argument(format!(
                "exportPolicy needs FlashBlade REST 2.3 or later; array {array} offers less"
            )));
        }
        if client.find_export_policy(policy).await?.is_none() {
            return Err(Error::invalid_argument(format!(
                "parameter exportPolicy={policy:?}: no such NFS export policy on array {array}"
            )));
        }
        Ok(())
    }

    pub(super) async fn create_volume_impl(
        &self,
        req: csi::CreateVolumeRequest,
    ) -> Result<csi::CreateVolumeResponse> {
        check_name(&req.name)?;
        check_capabilities(&req.volume_capabilities)?;
        let size = requested_bytes(req.capacity_range.as_ref())?;
        let mut candidates =
            VolumeParams::candidates_with_mutable(&req.parameters, &req.mutable_parameters, &self.config)?;
        let _guard = self.guard(format!("create:{}", req.name))?;
        let params = if !is_auto(&req.parameters) {
            candidates.remove(0)
        } else {
            let i = self.place(&req.name, &candidates, size).await?;
            candidates.swap_remove(i)
        };
        let client = self.client(&params.array)?;
        let fs_name = naming::fs_name_for(&params.name_prefix, &req.name);
        crate::telemetry::record_fs_name(&fs_name);

        // What the content should come from, resolved to a snapshot name.
        let source = req.volume_content_source.clone();
        let (mut source_snapshot, clone) = match source.as_ref().and_then(|s| s.r#type.as_ref()) {
            None => (None, None),
            Some(csi::volume_content_source::Type::Snapshot(s)) => (
                Some(self.source_snapshot(&params, &s.snapshot_id, size).await?),
                None,
            ),
            Some(csi::volume_content_source::Type::Volume(v)) => {
                let plan = self.clone_plan(&params, &v.volume_id, &req.name, size).await?;
                (Some(plan.snapshot_name()), Some(plan))
            }
        };
        let temp_snapshot = clone.as_ref().map(|p| p.snapshot_name());
        // A name that already exists is judged against this request.
        let judge = |existing: &FileSystem, source_snapshot: Option<&str>| {
            self.existing_volume(&req, &params, &fs_name, existing, source_snapshot, source.clone())
        };

        // Content from a snapshot or volume: look the name up first, so a
        // retry does not copy again. A plain create goes to the array at once
        // (one request for a fresh name) and judges an existing one after.
        if (source_snapshot.is_some() || clone.is_some())
            && let Some(existing) = client.find_file_system(&fs_name).await?
        {
            if let Some(t) = &temp_snapshot {
                self.drop_temp_snapshot(&params.array, t).await;
            }
            return judge(&existing, source_snapshot.as_deref());
        }

        let (rules, policy) = match &params.export {
            Export::Rules(r) => (Some(r.clone()), None),
            // No client until a node is published; the empty rules string
            // exports to nobody.
            Export::Nodes { .. } => (Some(String::new()), None),
            Export::Policy(p) => {
                self.check_export_policy(client, &params.array, p).await?;
                (None, Some(p.clone()))
            }
        };
        if let Some(plan) = &clone {
            source_snapshot = Some(self.ensure_clone_snapshot(&params.array, plan).await?);
        }
        let spec = FileSystemSpec {
            provisioned: Some(size),
            hard_limit: params.hard_limit,
            nfs_v3: params.nfs_v3,
            nfs_v41: params.nfs_v41,
            rules,
            export_policy: policy.map(String::from),
            snapshot_directory: params.snapshot_directory,
            default_user_quota: params.default_user_quota,
            default_group_quota: params.default_group_quota,
            source_snapshot: source_snapshot.clone(),
        };
        let created = client.create_file_system(&fs_name, &spec).await;
        if let Some(t) = &temp_snapshot {
            // The clone is a full copy; the intermediate snapshot must not
            // outlive this call either way.
            self.drop_temp_snapshot(&params.array, t).await;
        }
        let mut fs = match created? {
            Created::New(fs) => fs,
            Created::Found(existing) => return judge(&existing, source_snapshot.as_deref()),
        };
        // A clone keeps the source's size on some arrays: grow it to the request.
        if fs.provisioned != Some(size) {
            fs = client.resize_file_system(&fs, size).await?;
        }
        let resp = volume_response(&params, &fs, source)?;
        if let Some(v) = &resp.volume {
            record_volume_id(&v.volume_id);
            tracing::info!(volume_id = %v.volume_id, bytes = size, "volume created");
        }
        Ok(resp)
    }

    /// The answer for a name whose file system already exists: the same
    /// volume when it has exactly the requested size and parameters (a retry,
    /// or another controller's create during a hand-over), ALREADY_EXISTS when
    /// not, FAILED_PRECONDITION when it is destroyed.
    fn existing_volume(
        &self,
        req: &csi::CreateVolumeRequest,
        params: &VolumeParams,
        fs_name: &str,
        existing: &FileSystem,
        source_snapshot: Option<&str>,
        source: Option<csi::VolumeContentSource>,
    ) -> Result<csi::CreateVolumeResponse> {
        if existing.destroyed {
            return Err(Error::failed_precondition(format!(
                "file system {fs_name} exists in the destroyed state (recoverable for {} more minutes); recover it on the array (destroyed=false) and bind it to a PersistentVolume, or eradicate it, before creating this volume again",
                existing.time_remaining.unwrap_or(0) / 60_000
            )));
        }
        let compatible = existing
            .provisioned
            .is_some_and(|p| fits(req.capacity_range.as_ref(), p))
            && existing.hard_limit_enabled == params.hard_limit
            && existing.nfs.v3_enabled.unwrap_or(false) == params.nfs_v3
            && existing.nfs.v4_1_enabled.unwrap_or(false) == params.nfs_v41
            && match (
                source_snapshot,
                existing.source.as_ref().and_then(|s| s.name.as_deref()),
            ) {
                (Some(want), Some(got)) => want == got,
                (Some(_), None) => false,
                (None, _) => true,
            };
        if !compatible {
            return Err(Error::already_exists(format!(
                "file system {fs_name} for volume name {:?} exists with a different size or parameters (provisioned {:?}, hard limit {}, NFSv3 {:?}, NFSv4.1 {:?})",
                crate::error::clip(&req.name),
                existing.provisioned,
                existing.hard_limit_enabled,
                existing.nfs.v3_enabled,
                existing.nfs.v4_1_enabled
            )));
        }
        volume_response(params, existing, source)
    }

    pub(super) async fn delete_volume_impl(
        &self,
        req: csi::DeleteVolumeRequest,
    ) -> Result<csi::DeleteVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        record_volume_id(&req.volume_id);
        let _guard = self.guard(format!("volume:{}", req.volume_id))?;
        let vref = match req.volume_id.parse::<VolumeId>() {
            Ok(v) => v,
            Err(why) => {
                // No volume of ours can have this id: nothing to delete.
                tracing::info!(%why, "DeleteVolume of a malformed id: nothing to do");
                return Ok(csi::DeleteVolumeResponse {});
            }
        };
        match vref {
            VolumeId::Static {
                array,
                fs_name,
                version,
            } => {
                let array = select_array(&self.config, array.as_deref()).map_err(|_| {
                    Error::failed_precondition(format!(
                        "volume {} names an array that is not configured",
                        req.volume_id
                    ))
                })?;
                match self.client(&array.name)?.find_file_system(&fs_name).await? {
                    None => Ok(csi::DeleteVolumeResponse {}),
                    Some(_) => Err(Error::failed_precondition(match version {
                        Some(v) => format!(
                            "volume {} is a version of the imported file system {fs_name} (its snapshot {fs_name}.{v}); the driver never deletes or changes either — delete the PersistentVolume and manage the snapshot on the array",
                            req.volume_id
                        ),
                        None => format!(
                            "volume {} is an imported (static) file system; the driver never deletes it — delete the PersistentVolume and manage {fs_name} on the array",
                            req.volume_id
                        ),
                    })),
                }
            }
            VolumeId::Managed {
                array,
                fs_name,
                fs_id,
                delete,
                export: record,
            } => {
                let client = self.arrays.get(&array).ok_or_else(|| {
                    Error::failed_precondition(format!(
                        "volume {} lives on array {array}, which this controller is not configured for; nothing was deleted",
                        req.volume_id
                    ))
                })?;
                if delete == DeletePolicy::Destroy
                    && let Some(done) = self
                        .soft_delete_by_id(client, &req.volume_id, &fs_name, &fs_id, record)
                        .await?
                {
                    return Ok(done);
                }
                // By the array's id: the one file system this volume is,
                // found even after an earlier attempt renamed it.
                let Some(fs) = client.find_file_system_by_id(&fs_id).await? else {
                    return Ok(csi::DeleteVolumeResponse {});
                };
                if fs.name != fs_name && naming::tombstone_of(&fs_name, &fs.name).is_none() {
                    return Err(Error::failed_precondition(format!(
                        "file system {} on array {array} (volume {}) was renamed on the array from {fs_name}; nothing was changed",
                        fs.name, req.volume_id
                    )));
                }
                if delete == DeletePolicy::Retain {
                    tracing::info!(fs = %fs_name, "deletePolicy retain: file system left on the array");
                    return Ok(csi::DeleteVolumeResponse {});
                }
                // Snapshots matter only while the file system is live.
                if !fs.destroyed {
                    let snaps = self.live_driver_snapshots(client, &fs.name).await?;
                    if !snaps.is_empty() {
                        return Err(Error::failed_precondition(format!(
                            "volume {} has {} snapshot(s) ({}); FlashBlade snapshots go with their file system, so delete the VolumeSnapshots first",
                            req.volume_id,
                            snaps.len(),
                            snaps.join(", ")
                        )));
                    }
                }
                let fs = if fs.destroyed {
                    fs
                } else {
                    // A soft delete keeps the data but should free the name
                    // (a new claim of the same name must not wait for the
                    // eradication delay): rename first, where the array can.
                    let fs = if delete == DeletePolicy::Destroy
                        && fs.name == fs_name
                        && client.api_minor().await? >= 16
                    {
                        let secs = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        // The versions it serves now are what recover restores.
                        let record = ExportRecord {
                            versions: NfsVersions::from_flags(
                                fs.nfs.v3_enabled.unwrap_or(false),
                                fs.nfs.v4_1_enabled.unwrap_or(false),
                            )
                            .unwrap_or(record.versions),
                            ..record
                        };
                        // The same name deleted twice within a second (a
                        // claim recreated and deleted again at once) would
                        // get the same tombstone: take the next second's.
                        let mut renamed = None;
                        for later in 0..16 {
                            let tomb = naming::tombstone_name(&fs_name, secs + later, record);
                            match client.rename_file_system(&fs, &tomb).await {
                                Ok(fs) => {
                                    renamed = Some(fs);
                                    break;
                                }
                                Err(e) if e.is_already_exists() => continue,
                                Err(e) => return Err(e.into()),
                            }
                        }
                        renamed.ok_or_else(|| {
                            Error::unavailable(format!(
                                "file system {fs_name}: every tombstone name for the next 16 seconds is taken; retry later"
                            ))
                        })?
                    } else {
                        fs
                    };
                    client.destroy_file_system(&fs).await?
                };
                if delete == DeletePolicy::Eradicate {
                    client.eradicate_file_system(&fs).await?;
                    tracing::info!(fs = %fs_name, "file system destroyed and eradicated");
                } else {
                    tracing::info!(
                        fs = %fs_name,
                        renamed_to = %fs.name,
                        time_remaining_ms = fs.time_remaining.unwrap_or(0),
                        "file system destroyed (recoverable until eradicated)"
                    );
                }
                Ok(csi::DeleteVolumeResponse {})
            }
        }
    }

    /// The default soft delete in two requests, addressed by the array's id
    /// from the volume id (so no look-up, and never another file system): a
    /// filtered GET for live driver snapshots owned by that id, then one
    /// PATCH by `ids=` that switches the protocols off, renames the file
    /// system to its tombstone (REST 2.16+, frees the name) and destroys it.
    /// A missing id is done. `None` when this path cannot settle it (live
    /// snapshots, already destroyed, any other refusal): the caller then
    /// takes the full path, which looks the file system up and decides.
    ///
    /// Unlike the full path this does not refuse a file system an admin
    /// renamed (nothing tells it the current name without a third request):
    /// the id still proves it is the one made for this volume, and the
    /// result is recoverable (destroyed, not eradicated).
    async fn soft_delete_by_id(
        &self,
        client: &crate::flashblade::ArrayClient,
        volume_id: &str,
        fs_name: &FsName,
        fs_id: &ObjectId,
        record: ExportRecord,
    ) -> Result<Option<csi::DeleteVolumeResponse>> {
        match client
            .list_snapshots(&Filter::driver_snapshots_owned_by(fs_id), 1, None)
            .await
        {
            Ok(page) if page.items.is_empty() => {}
            Ok(_) | Err(crate::flashblade::Error::Api { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let tombstone = if client.api_minor().await? >= 16 {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Some(naming::tombstone_name(fs_name, secs, record))
        } else {
            None
        };
        match client
            .destroy_file_system_by_id(fs_id, fs_name, tombstone.as_deref())
            .await
        {
            Ok(Some(fs)) => {
                tracing::info!(
                    fs = %fs_name,
                    renamed_to = %fs.name,
                    time_remaining_ms = fs.time_remaining.unwrap_or(0),
                    "file system destroyed (recoverable until eradicated)"
                );
                Ok(Some(csi::DeleteVolumeResponse {}))
            }
            Ok(None) => {
                tracing::info!(volume_id, "no file system has this id: nothing to delete");
                Ok(Some(csi::DeleteVolumeResponse {}))
            }
            Err(crate::flashblade::Error::Api { message, .. }) => {
                tracing::debug!(%message, "one-request soft delete refused; looking the file system up");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves any volume id or handle to its live file system; NOT_FOUND
    /// when it is gone or is not the volume the id was made for.
    pub(super) async fn resolve_volume(&self, volume_id: &str) -> Result<(VolumeId, ArrayName, FileSystem)> {
        let vref = volume_id.parse::<VolumeId>().map_err(|why| {
            Error::not_found(format!("volume {volume_id:?} does not exist ({why})")).because(why)
        })?;
        let array = match vref.array() {
            Some(a) => a.clone(),
            None => select_array(&self.config, None)?.name.clone(),
        };
        let client = self.client(&array).map_err(|_| {
            Error::not_found(format!("volume {volume_id:?}: array {array} is not configured"))
        })?;
        let fs = client
            .find_file_system(vref.fs_name())
            .await?
            .ok_or_else(|| Error::not_found(format!("volume {volume_id:?} does not exist")))?;
        if let VolumeId::Managed { fs_id, .. } = &vref
            && fs.id != *fs_id
        {
            return Err(Error::not_found(format!(
                "volume {volume_id:?} does not exist (file system {} now has another id)",
                fs.name
            )));
        }
        if fs.destroyed {
            return Err(Error::not_found(format!("volume {volume_id:?} is destroyed")));
        }
        Ok((vref, array, fs))
    }

    pub(super) async fn expand_impl(
        &self,
        req: csi::ControllerExpandVolumeRequest,
    ) -> Result<csi::ControllerExpandVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        let Some(range) = req.capacity_range.as_ref() else {
            return Err(Error::invalid_argument("capacity_range is required"));
        };
        if range.required_bytes <= 0 && range.limit_bytes <= 0 {
            return Err(Error::invalid_argument(
                "capacity_range needs required_bytes or limit_bytes",
            ));
        }
        let new_size = requested_bytes(Some(range))?;
        if let Some(cap) = &req.volume_capability {
            check_capability(cap).map_err(Error::invalid)?;
        }
        record_volume_id(&req.volume_id);
        let _guard = self.guard(format!("volume:{}", req.volume_id))?;
        let (vref, array, fs) = self.resolve_volume(&req.volume_id).await?;
        if matches!(vref, VolumeId::Static { .. }) {
            return Err(Error::failed_precondition(format!(
                "volume {} is an imported (static) file system; the driver never resizes it",
                req.volume_id
            )));
        }
        let current = fs.provisioned.unwrap_or(i64::MAX);
        if range.limit_bytes > 0 && current > range.limit_bytes {
            return Err(Error::out_of_range(format!(
                "volume is {current} bytes, more than limit_bytes {}; shrinking is not supported",
                range.limit_bytes
            )));
        }
        if new_size < current {
            return Err(Error::out_of_range(format!(
                "volume is {current} bytes; shrinking to {new_size} is not supported"
            )));
        }
        let fs = if new_size == current {
            fs
        } else {
            self.client(&array)?.resize_file_system(&fs, new_size).await?
        };
        tracing::info!(bytes = new_size, "volume expanded");
        Ok(csi::ControllerExpandVolumeResponse {
            capacity_bytes: fs.provisioned.unwrap_or(new_size),
            // The quota is the whole story for NFS: nothing to do on the node.
            node_expansion_required: false,
        })
    }

    pub(super) async fn validate_impl(
        &self,
        req: csi::ValidateVolumeCapabilitiesRequest,
    ) -> Result<csi::ValidateVolumeCapabilitiesResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(Error::invalid_argument("volume_capabilities is required"));
        }
        record_volume_id(&req.volume_id);
        let (vref, _, _) = self.resolve_volume(&req.volume_id).await?;
        let is_version =
            vref.version().is_some() || req.volume_context.contains_key(crate::context::SNAPSHOT);
        let unsupported: Vec<String> = req
            .volume_capabilities
            .iter()
            .filter_map(|c| {
                match check_capability(c) {
                Err(e) => Some(e.to_string()),
                Ok(()) if is_version && !crate::volume::access::is_reader_only(c) => Some(
                    "a dataset version (a snapshot) is read-only: only reader-only access modes are supported"
                        .into(),
                ),
                Ok(()) => None,
            }
            })
            .collect();
        if !unsupported.is_empty() {
            return Ok(csi::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: unsupported.join("; "),
            });
        }
        let checked = if !req.parameters.is_empty() {
            VolumeParams::candidates_with_mutable(&req.parameters, &req.mutable_parameters, &self.config)
                .map(|_| ())
        } else if !req.mutable_parameters.is_empty() {
            select_array(&self.config, None)
                .and_then(|a| super::params::MutableParams::parse(&req.mutable_parameters, a))
                .map(|_| ())
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            return Ok(csi::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            });
        }
        Ok(csi::ValidateVolumeCapabilitiesResponse {
            confirmed: Some(csi::validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: String::new(),
        })
    }

    pub(super) async fn list_volumes_impl(
        &self,
        req: csi::ListVolumesRequest,
    ) -> Result<csi::ListVolumesResponse> {
        if req.max_entries < 0 {
            return Err(Error::invalid_argument("max_entries must not be negative"));
        }
        let (start_idx, after) = if req.starting_token.is_empty() {
            (0, String::new())
        } else {
            decode_token(&req.starting_token)?
        };
        // The last name goes into an array filter: only a real name will do.
        if start_idx >= self.config.arrays.len().max(1)
            || !(after.is_empty() || after.parse::<FsName>().is_ok())
        {
            return Err(Error::aborted(format!(
                "starting_token {:?} is out of range",
                req.starting_token
            )));
        }
        let max = if req.max_entries == 0 {
            usize::MAX
        } else {
            req.max_entries as usize
        };
        let handles = self.pv_handles.managed().await;
        let mut entries = Vec::new();
        for (idx, array) in self.config.arrays.iter().enumerate().skip(start_idx) {
            let Some(client) = self.arrays.get(&array.name) else {
                continue;
            };
            let mut prefixes = vec![array.name_prefix.clone()];
            prefixes.extend(array.extra_name_prefixes.iter().cloned());
            let filter = Filter::name_prefixes(&prefixes);
            let after_here = if idx == start_idx { after.as_str() } else { "" };
            let need = (max != usize::MAX).then(|| max - entries.len());
            let all = collect_page(
                &filter,
                after_here,
                need,
                |f: &FileSystem| &f.name,
                |f, limit, token, sorted| async move {
                    client
                        .list_file_systems_sorted(&f, Some(false), limit, token.as_deref(), sorted)
                        .await
                },
            )
            .await?;
            let server = array.nfs_endpoint.as_deref().unwrap_or_default();
            for fs in all {
                if idx == start_idx && !after.is_empty() && fs.name.as_str() <= after.as_str() {
                    continue;
                }
                if entries.len() == max {
                    let last = entries
                        .last()
                        .map(|(_, n): &(csi::list_volumes_response::Entry, String)| n.clone())
                        .unwrap_or_default();
                    return Ok(csi::ListVolumesResponse {
                        entries: entries.into_iter().map(|(e, _)| e).collect(),
                        next_token: encode_token(idx, &last),
                    });
                }
                let v3 = fs.nfs.v3_enabled.unwrap_or(false);
                let v41 = fs.nfs.v4_1_enabled.unwrap_or(false);
                entries.push((
                    csi::list_volumes_response::Entry {
                        volume: Some(csi::Volume {
                            capacity_bytes: fs.provisioned.unwrap_or(0),
                            // The id its PV holds (it records the delete
                            // policy), else the default form.
                            volume_id: match handles.get(&(
                                array.name.to_string(),
                                fs.name.clone(),
                                fs.id.clone(),
                            )) {
                                Some(h) => h.clone(),
                                None => {
                                    VolumeId::managed(&array.name, &fs.name, &fs.id, DeletePolicy::Destroy)
                                        .map_err(from_array)?
                                        .with_export(ExportRecord {
                                            versions: NfsVersions::from_flags(v3, v41).unwrap_or_default(),
                                            ..Default::default()
                                        })
                                        .to_string()
                                }
                            },
                            volume_context: volume_context(&array.name, server, &fs.name, v3, v41),
                            content_source: None,
                            accessible_topology: vec![],
                        }),
                        status: None,
                    },
                    fs.name.clone(),
                ));
            }
            // The next array starts from its beginning; a full page that ends
            // exactly at an array boundary continues there.
            if entries.len() == max && idx + 1 < self.config.arrays.len() {
                return Ok(csi::ListVolumesResponse {
                    entries: entries.into_iter().map(|(e, _)| e).collect(),
                    next_token: encode_token(idx + 1, ""),
                });
            }
        }
        Ok(csi::ListVolumesResponse {
            entries: entries.into_iter().map(|(e, _)| e).collect(),
            next_token: String::new(),
        })
    }

    pub(super) async fn get_capacity_impl(
        &self,
        req: csi::GetCapacityRequest,
    ) -> Result<csi::GetCapacityResponse> {
        for cap in &req.volume_capabilities {
            check_capability(cap).map_err(Error::invalid)?;
        }
        let array = if req.parameters.is_empty() {
            select_array(&self.config, None)?.name.clone()
        } else {
            let mut candidates = VolumeParams::candidates(&req.parameters, &self.config)?;
            if is_auto(&req.parameters) {
                return self.capacity_of(&candidates).await;
            }
            candidates.remove(0).array
        };
        let space = self.client(&array)?.array_space().await?;
        let available = (space.capacity - space.space.used()).max(0);
        Ok(csi::GetCapacityResponse {
            available_capacity: available,
            maximum_volume_size: Some(available),
            minimum_volume_size: None,
        })
    }

    /// Capacity for a class that lets the driver choose: without topology a
    /// volume may land on any of its arrays, so the available capacity is
    /// their sum and the largest volume the largest free space of one.
    /// Arrays that do not answer are left out (and logged).
    async fn capacity_of(&self, candidates: &[VolumeParams]) -> Result<csi::GetCapacityResponse> {
        let mut total = 0i64;
        let mut largest: Option<i64> = None;
        for p in candidates {
            if let Some(free) = self.free_space(&p.array).await {
                total = total.saturating_add(free);
                largest = Some(largest.map_or(free, |l| l.max(free)));
            }
        }
        let Some(largest) = largest else {
            return Err(Error::unavailable(
                "no array this class allows answers; capacity unknown",
            ));
        };
        Ok(csi::GetCapacityResponse {
            available_capacity: total,
            maximum_volume_size: Some(largest),
            minimum_volume_size: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(mode: i32, block: bool) -> csi::VolumeCapability {
        use csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
        csi::VolumeCapability {
            access_type: Some(if block {
                AccessType::Block(BlockVolume {})
            } else {
                AccessType::Mount(MountVolume::default())
            }),
            access_mode: Some(AccessMode { mode }),
        }
    }

    #[test]
    fn capabilities() {
        for mode in 1..=7 {
            check_capability(&cap(mode, false)).unwrap();
        }
        assert!(check_capability(&cap(0, false)).is_err());
        assert!(check_capability(&cap(8, false)).is_err());
        assert_eq!(
            check_capability(&cap(1, true)),
            Err(crate::volume::CapabilityError::Block)
        );
        assert!(check_capabilities(&[]).is_err());
    }

    #[test]
    fn capacity() {
        let r = |req, lim| {
            Some(csi::CapacityRange {
                required_bytes: req,
                limit_bytes: lim,
            })
        };
        assert_eq!(requested_bytes(None).unwrap(), DEFAULT_VOLUME_BYTES);
        assert_eq!(requested_bytes(r(5, 0).as_ref()).unwrap(), 5);
        assert_eq!(requested_bytes(r(5, 5).as_ref()).unwrap(), 5);
        assert_eq!(requested_bytes(r(0, 7).as_ref()).unwrap(), 7);
        assert!(requested_bytes(r(9, 5).as_ref()).is_err());
        assert!(requested_bytes(r(-1, 0).as_ref()).is_err());
        assert!(fits(r(5, 10).as_ref(), 7));
        assert!(!fits(r(5, 10).as_ref(), 11));
        assert!(!fits(r(5, 0).as_ref(), 4));
    }

    #[test]
    fn tokens() {
        let t = encode_token(1, "k8s-pvc-9");
        assert_eq!(decode_token(&t).unwrap(), (1, "k8s-pvc-9".to_string()));
        for bad in ["invalid-token", "zz", "7631", ""] {
            assert!(matches!(decode_token(bad), Err(Error::Aborted { .. })), "{bad}");
        }
    }

    #[test]
    fn names() {
        check_name("pvc-1").unwrap();
        check_name(&"x".repeat(128)).unwrap();
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(129)).is_err());
        assert!(check_name("a\u{1}b").is_err());
    }
}
