//! The PersistentVolume and claim the admin commands write for a file system
//! that already exists (`recover --claim`, `adopt`): one builder, so both
//! give the node the same volume attributes and bind the pair the same way —
//! the PV pre-bound to the claim by `claimRef`, the claim naming the PV in
//! `volumeName`, so no provisioner and no other claim can come between them.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::cluster::ClaimName;
use crate::context;

/// The volume attributes the controller would have written for `fs_name`
/// (the node mounts from these and never asks the array).
pub(crate) fn attributes(
    array: &str,
    fs_name: &str,
    server: Option<&str>,
    nfs_versions: &str,
) -> Map<String, Value> {
    let mut attrs = Map::new();
    attrs.insert(context::ARRAY.into(), json!(array));
    attrs.insert(context::FS_NAME.into(), json!(fs_name));
    attrs.insert(context::SHARE.into(), json!(format!("/{fs_name}")));
    if !nfs_versions.is_empty() {
        attrs.insert(context::NFS_VERSIONS.into(), json!(nfs_versions));
    }
    if let Some(server) = server {
        attrs.insert(context::SERVER.into(), json!(server));
    }
    attrs
}

/// A PV of this driver bound to one claim, and that claim. Empty optional
/// parts are left out of the manifests.
#[derive(Debug, Clone, Default)]
pub(crate) struct BoundPair {
    pub pv_name: String,
    pub driver: String,
    pub volume_handle: String,
    pub attributes: Map<String, Value>,
    /// A Kubernetes quantity, e.g. `10Gi` or a byte count.
    pub capacity: String,
    pub access_modes: Vec<String>,
    pub reclaim_policy: String,
    pub storage_class: String,
    pub read_only: bool,
    pub mount_options: Vec<String>,
    pub volume_mode: Option<String>,
    pub pv_labels: BTreeMap<String, String>,
    pub pv_annotations: BTreeMap<String, String>,
    pub claim: ClaimName,
    /// The claim's access modes when they differ from the PV's.
    pub claim_access_modes: Option<Vec<String>>,
    /// The claim's request when it differs from the PV's capacity.
    pub claim_request: Option<String>,
    pub claim_labels: BTreeMap<String, String>,
    pub claim_annotations: BTreeMap<String, String>,
}

fn metadata(
    name: &str,
    namespace: Option<&str>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Value {
    let mut m = json!({"name": name});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if !labels.is_empty() {
        m["labels"] = json!(labels);
    }
    if !annotations.is_empty() {
        m["annotations"] = json!(annotations);
    }
    m
}

impl BoundPair {
    pub(crate) fn pv(&self) -> Value {
        let mut csi = json!({
            "driver": self.driver,
            "volumeHandle": self.volume_handle,
            "volumeAttributes": self.attributes,
        });
        if self.read_only {
            csi["readOnly"] = json!(true);
        }
        let mut spec = json!({
            "capacity": {"storage": self.capacity},
            "accessModes": self.access_modes,
            "persistentVolumeReclaimPolicy": self.reclaim_policy,
            "storageClassName": self.storage_class,
            "claimRef": {"namespace": self.claim.namespace, "name": self.claim.name},
            "csi": csi,
        });
        if !self.mount_options.is_empty() {
            spec["mountOptions"] = json!(self.mount_options);
        }
        if let Some(mode) = &self.volume_mode {
            spec["volumeMode"] = json!(mode);
        }
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": metadata(&self.pv_name, None, &self.pv_labels, &self.pv_annotations),
            "spec": spec,
        })
    }

    pub(crate) fn claim(&self) -> Value {
        let mut spec = json!({
            "accessModes": self.claim_access_modes.as_ref().unwrap_or(&self.access_modes),
            "resources": {"requests": {"storage": self.claim_request.as_ref().unwrap_or(&self.capacity)}},
            "storageClassName": self.storage_class,
            "volumeName": self.pv_name,
        });
        if let Some(mode) = &self.volume_mode {
            spec["volumeMode"] = json!(mode);
        }
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(&self.claim.name, Some(&self.claim.namespace), &self.claim_labels, &self.claim_annotations),
            "spec": spec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_binds_both_ways_and_leaves_out_what_is_empty() {
        let p = BoundPair {
            pv_name: "fbcsi-pvc-1".into(),
            driver: "flashblade.csi.dev".into(),
            volume_handle: "fb01/k8s-pvc-1/abc".into(),
            attributes: attributes("fb01", "k8s-pvc-1", Some("10.0.0.5"), "3"),
            capacity: "10Gi".into(),
            access_modes: vec!["ReadWriteOnce".into()],
            reclaim_policy: "Retain".into(),
            claim: "jhub/claim-alice".parse().unwrap(),
            ..Default::default()
        };
        let pv = p.pv();
        assert_eq!(pv["spec"]["claimRef"]["name"], "claim-alice");
        assert_eq!(pv["spec"]["csi"]["volumeAttributes"]["share"], "/k8s-pvc-1");
        assert_eq!(pv["spec"]["csi"]["volumeAttributes"]["server"], "10.0.0.5");
        assert!(pv["spec"]["csi"].get("readOnly").is_none());
        assert!(pv["spec"].get("mountOptions").is_none());
        assert!(pv["metadata"].get("labels").is_none());
        let pvc = p.claim();
        assert_eq!(pvc["spec"]["volumeName"], "fbcsi-pvc-1");
        assert_eq!(pvc["metadata"]["namespace"], "jhub");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");
        // Both parse as the Kubernetes types the cluster module sends.
        let _: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(pv).unwrap();
        let _: k8s_openapi::api::core::v1::PersistentVolumeClaim = serde_json::from_value(pvc).unwrap();
    }
}
