//! NodeGetVolumeStats: usage and condition of a published volume.

use super::*;

impl NodeService {
    pub(super) async fn stats(
        &self,
        b: &Budget,
        req: csi::NodeGetVolumeStatsRequest,
    ) -> Result<csi::NodeGetVolumeStatsResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if req.volume_path.is_empty() {
            return Err(Error::invalid_argument("volume_path is required"));
        }
        record_volume_id(&req.volume_id);
        let not_found = || Error::not_found(format!("no volume is mounted at {:?}", req.volume_path));
        let path =
            paths::check_path("volume_path", &req.volume_path, &self.kubelet_dir).map_err(|_| not_found())?;
        let (resolved, mounts) = match self.locate(b, "volume_path", &path, false).await {
            Ok(found) => found,
            Err(Error::InvalidArgument { .. }) => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let path = resolved.path;
        match resolved.found {
            Found::MountPoint => {}
            // A directory but no mount: the volume's mount went away.
            Found::Dir => {
                self.metrics.volume_condition(&req.volume_id, true);
                return Ok(csi::NodeGetVolumeStatsResponse {
                    usage: Vec::new(),
                    volume_condition: Some(csi::VolumeCondition {
                        abnormal: true,
                        message: format!("the volume's mount at {} is missing", path.display()),
                    }),
                });
            }
            Found::Missing | Found::NotDir => return Err(not_found()),
        }
        let key = mountinfo::top_mount_at(&mounts, &path)
            .map(|m| StatKey {
                fs: m.device.clone(),
                server: mounter::server_of(m),
            })
            .unwrap_or_else(|| StatKey {
                fs: String::new(),
                server: String::new(),
            });
        let (usage, condition) = match self.mounter.statfs(&path, &key, b.left()).await {
            Ok(s) => (
                vec![
                    csi::VolumeUsage {
                        available: s.available_bytes,
                        total: s.total_bytes,
                        used: s.used_bytes,
                        unit: csi::volume_usage::Unit::Bytes as i32,
                    },
                    csi::VolumeUsage {
                        available: s.free_inodes,
                        total: s.total_inodes,
                        used: s.used_inodes,
                        unit: csi::volume_usage::Unit::Inodes as i32,
                    },
                ],
                csi::VolumeCondition {
                    abnormal: false,
                    message: "volume is mounted and answering".into(),
                },
            ),
            // Not measured because of a limit held by other file systems'
            // stuck calls: nothing was seen failing here, so no condition.
            Err(MountError::Limit(why)) => {
                return Err(Error::resource_exhausted(format!(
                    "volume {} at {}: {why}",
                    req.volume_id,
                    path.display()
                )));
            }
            Err(e) => {
                if let MountError::Timeout { .. } = e {
                    self.metrics.deadline_exceeded("stat");
                }
                (
                    Vec::new(),
                    csi::VolumeCondition {
                        abnormal: true,
                        message: format!("volume is mounted but unhealthy: {e}"),
                    },
                )
            }
        };
        self.metrics.volume_condition(&req.volume_id, condition.abnormal);
        Ok(csi::NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(condition),
        })
    }
}
