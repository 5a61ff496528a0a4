//! The volume ids ListVolumes reports. A managed volume's id records a
//! non-default delete policy (`/e`, `/r`), which the array does not hold, so
//! the array alone cannot tell it; the PersistentVolume holding the id as its
//! volume handle can. When the controller can read PVs (in a cluster: its
//! service account may list them, as the provisioner's does), ListVolumes
//! returns exactly the handle of the PV naming each file system; without
//! cluster access (development, conformance runs) or for a file system no PV
//! names, the id in its default form.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::volume::VolumeId;

/// How long a listing of PV handles is reused.
const HANDLES_TTL: Duration = Duration::from_secs(30);

/// (array, file-system name, file-system id) of a managed volume.
type Key = (String, String, String);

pub(crate) struct PvHandles {
    driver: String,
    kubeconfig: Option<PathBuf>,
    cluster: tokio::sync::OnceCell<Option<Cluster>>,
    cache: Mutex<Option<(Instant, HashMap<Key, String>)>>,
}

impl PvHandles {
    pub(crate) fn new(driver: String, kubeconfig: Option<PathBuf>) -> Self {
        Self {
            driver,
            kubeconfig,
            cluster: tokio::sync::OnceCell::new(),
            cache: Mutex::new(None),
        }
    }

    async fn cluster(&self) -> Option<&Cluster> {
        self.cluster
            .get_or_init(|| async {
                match Cluster::connect(self.kubeconfig.as_deref()).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::info!(
                            reason = %e,
                            "no Kubernetes API access: ListVolumes reports volume ids in their default form"
                        );
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// The handles of this driver's PVs for managed volumes, by what they
    /// name; empty when the cluster cannot be read (said in the log).
    pub(crate) async fn managed(&self) -> HashMap<Key, String> {
        if let Some((at, map)) = &*self.cache.lock().expect("handles lock")
            && at.elapsed() < HANDLES_TTL
        {
            return map.clone();
        }
        let Some(cluster) = self.cluster().await else {
            return HashMap::new();
        };
        let handles = match cluster.volume_handles(&self.driver).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list PersistentVolumes: ListVolumes reports volume ids in their default form");
                return HashMap::new();
            }
        };
        let map: HashMap<Key, String> = handles
            .into_iter()
            .filter_map(|h| match h.parse::<VolumeId>() {
                Ok(VolumeId::Managed {
                    array,
                    fs_name,
                    fs_id,
                    ..
                }) => Some(((array.to_string(), fs_name.to_string(), fs_id.to_string()), h)),
                _ => None,
            })
            .collect();
        *self.cache.lock().expect("handles lock") = Some((Instant::now(), map.clone()));
        map
    }
}
