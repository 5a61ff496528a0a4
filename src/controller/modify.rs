//! ControllerModifyVolume: the parameters a VolumeAttributesClass may change
//! on a live volume (hard limit, snapshot directory, default user and group
//! quotas, export rules or policy), parsed exactly as the StorageClass's.

use serde_json::{Value, json};

use super::ControllerService;
use super::params::{Export, MutableParams, check_mutable_keys, select_array};
use crate::csi;
use crate::error::{Error, Result};
use crate::flashblade::models::FileSystem;
use crate::telemetry::record_volume_id;
use crate::volume::VolumeId;

/// The PATCH body that brings `fs` to `want`, holding only what differs;
/// `None` when nothing does (a repeated call changes nothing).
pub(crate) fn modify_body(fs: &FileSystem, want: &MutableParams) -> Option<Value> {
    let mut body = serde_json::Map::new();
    if let Some(h) = want.hard_limit
        && h != fs.hard_limit_enabled
    {
        body.insert("hard_limit_enabled".into(), json!(h));
    }
    if let Some(s) = want.snapshot_directory
        && Some(s) != fs.snapshot_directory_enabled
    {
        body.insert("snapshot_directory_enabled".into(), json!(s));
    }
    if let Some(q) = want.default_user_quota
        && q != fs.default_user_quota.unwrap_or(0)
    {
        body.insert("default_user_quota".into(), json!(q));
    }
    if let Some(q) = want.default_group_quota
        && q != fs.default_group_quota.unwrap_or(0)
    {
        body.insert("default_group_quota".into(), json!(q));
    }
    let policy_now = fs.nfs.export_policy.as_ref().and_then(|p| p.name.as_deref());
    match &want.export {
        Some(Export::Rules(r)) if policy_now.is_some() || fs.nfs.rules.as_deref() != Some(r.as_str()) => {
            body.insert("nfs".into(), json!({"rules": r}));
        }
        Some(Export::Policy(p)) if policy_now != Some(p.as_str()) => {
            body.insert("nfs".into(), json!({"export_policy": {"name": p.as_str()}}));
        }
        _ => {}
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

impl ControllerService {
    /// ControllerModifyVolume for the admin commands: the same checks and
    /// the same PATCH as a VolumeAttributesClass change.
    pub(crate) async fn modify_volume(
        &self,
        volume_id: &str,
        mutable_parameters: std::collections::HashMap<String, String>,
    ) -> Result<()> {
        self.modify_impl(csi::ControllerModifyVolumeRequest {
            volume_id: volume_id.to_string(),
            mutable_parameters,
            ..Default::default()
        })
        .await
        .map(|_| ())
    }

    pub(super) async fn modify_impl(
        &self,
        req: csi::ControllerModifyVolumeRequest,
    ) -> Result<csi::ControllerModifyVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        // Keys first: a bad key is refused whatever the volume.
        check_mutable_keys(&req.mutable_parameters)?;
        record_volume_id(&req.volume_id);
        let vref = req.volume_id.parse::<VolumeId>().map_err(|why| {
            Error::not_found(format!("volume {:?} does not exist ({why})", req.volume_id)).because(why)
        })?;
        if matches!(vref, VolumeId::Static { .. }) {
            // One that does not exist is NOT_FOUND, as for any volume.
            self.resolve_volume(&req.volume_id).await?;
            return Err(Error::failed_precondition(format!(
                "volume {} is an imported (static) file system; the driver never changes it, so a VolumeAttributesClass cannot apply to it",
                req.volume_id
            )));
        }
        let array = select_array(&self.config, vref.array().map(|a| a.as_str())).map_err(|_| {
            Error::not_found(format!("volume {:?}: its array is not configured", req.volume_id))
        })?;
        let want = MutableParams::parse(&req.mutable_parameters, array)?;
        let _guard = self.guard(format!("volume:{}", req.volume_id))?;
        let (_, array, fs) = self.resolve_volume(&req.volume_id).await?;
        let client = self.client(&array)?;
        if let Some(Export::Policy(p)) = &want.export {
            self.check_export_policy(client, &array, p).await?;
        }
        match modify_body(&fs, &want) {
            None => tracing::info!(fs = %fs.name, "volume already has these parameters"),
            Some(body) => {
                let changed: Vec<String> = body
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                client
                    .patch_file_system(&fs.id, body, vec![], format!("modify file system {}", fs.name))
                    .await?;
                tracing::info!(fs = %fs.name, changed = %changed.join(","), "volume modified");
            }
        }
        Ok(csi::ControllerModifyVolumeResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flashblade::models::{Nfs, Reference};

    fn fs() -> FileSystem {
        FileSystem {
            id: "1".into(),
            name: "k8s-a".into(),
            hard_limit_enabled: true,
            snapshot_directory_enabled: Some(true),
            default_user_quota: Some(0),
            nfs: Nfs {
                rules: Some("10.0.0.0/8(rw)".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_differences_are_sent() {
        let same = MutableParams {
            hard_limit: Some(true),
            snapshot_directory: Some(true),
            default_user_quota: Some(0),
            default_group_quota: None,
            export: Some(Export::Rules("10.0.0.0/8(rw)".into())),
        };
        assert_eq!(modify_body(&fs(), &same), None);
        let want = MutableParams {
            hard_limit: Some(false),
            default_user_quota: Some(10 << 30),
            ..Default::default()
        };
        assert_eq!(
            modify_body(&fs(), &want),
            Some(json!({"hard_limit_enabled": false, "default_user_quota": 10i64 << 30}))
        );
        // Rules replace an attached policy even when the rules text matches.
        let mut with_policy = fs();
        with_policy.nfs.export_policy = Some(Reference {
            id: Some("p1".into()),
            name: Some("nodes".into()),
        });
        assert_eq!(
            modify_body(&with_policy, &same),
            Some(json!({"nfs": {"rules": "10.0.0.0/8(rw)"}}))
        );
        let policy = MutableParams {
            export: Some(Export::Policy("nodes".parse().unwrap())),
            ..Default::default()
        };
        assert_eq!(modify_body(&with_policy, &policy), None);
        assert_eq!(
            modify_body(&fs(), &policy),
            Some(json!({"nfs": {"export_policy": {"name": "nodes"}}}))
        );
    }
}
