//! The volume ids ListVolumes reports. A managed volume's id records a
//! non-default delete policy (`/e`, `/r`), which the array does not hold, so
//! the array alone cannot tell it; the PersistentVolume holding the id as its
//! volume handle can. When the controller can read PVs (in a cluster: its
//! service account may list them, as the provisioner's does), ListVolumes
//! returns exactly the handle of the PV naming each file system; without
//! cluster access (development, conformance runs) or for a file system no PV
//! names, the id in its default form. The PV listing is the controller's
//! shared, cached one ([`ClusterView`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::publish::ClusterView;
use crate::cluster::PvInfo;
use crate::volume::VolumeId;

/// (array, file-system name, file-system id) of a managed volume.
type Key = (String, String, String);

pub(crate) struct PvHandles {
    view: Arc<ClusterView>,
    /// Whether the missing cluster access was logged (once is enough).
    said: AtomicBool,
    /// The map made from the listing the view last handed out: ListVolumes
    /// asks once per page, and parsing every PV's handle for every page made
    /// a pass quadratic in the number of volumes.
    made: Mutex<Option<Made>>,
}

type Made = (Arc<Vec<PvInfo>>, Arc<HashMap<Key, String>>);

impl PvHandles {
    pub(crate) fn new(view: Arc<ClusterView>) -> Self {
        Self {
            view,
            said: AtomicBool::new(false),
            made: Mutex::new(None),
        }
    }

    /// The handles of this driver's PVs for managed volumes, by what they
    /// name; empty when the cluster cannot be read (said in the log, once).
    pub(crate) async fn managed(&self) -> Arc<HashMap<Key, String>> {
        let pvs = match self.view.driver_pvs(false).await {
            Ok(pvs) => pvs,
            Err(e) => {
                if !self.said.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        reason = %e,
                        "cannot read PersistentVolumes: ListVolumes reports volume ids in their default form"
                    );
                }
                return Arc::default();
            }
        };
        if let Some((from, map)) = &*self.made.lock().expect("handles lock")
            && Arc::ptr_eq(from, &pvs)
        {
            return map.clone();
        }
        let map: Arc<HashMap<Key, String>> = Arc::new(
            pvs.iter()
                .filter_map(|pv| match pv.volume_handle.parse::<VolumeId>() {
                    Ok(VolumeId::Managed {
                        array,
                        fs_name,
                        fs_id,
                        ..
                    }) => Some((
                        (array.to_string(), fs_name.to_string(), fs_id.to_string()),
                        pv.volume_handle.clone(),
                    )),
                    _ => None,
                })
                .collect(),
        );
        *self.made.lock().expect("handles lock") = Some((pvs, map.clone()));
        map
    }
}
