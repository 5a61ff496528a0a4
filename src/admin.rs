//! Storage-admin commands that share the controller's configuration and
//! array client: in-place restore of a volume from one of its snapshots.

use std::sync::Arc;

use crate::app::{AppError, array_clients};
use crate::config::Config;
use crate::controller::ControllerService;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Setup(#[from] AppError),
    #[error("{0}")]
    Refused(#[from] crate::error::Error),
}

/// Restores `volume_id` in place from `snapshot_id` (a snapshot of that same
/// volume). Data written after the snapshot is discarded.
pub async fn restore(config: Config, volume_id: &str, snapshot_id: &str) -> Result<String, AdminError> {
    let config = Arc::new(config);
    // A one-off command: its metrics are recorded but not served.
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let arrays = array_clients(&config, &metrics)?;
    let service = ControllerService::new(config, arrays.clone(), metrics);
    let result = service.restore_volume(volume_id, snapshot_id).await;
    for c in arrays.values() {
        c.logout().await;
    }
    let fs = result?;
    Ok(format!(
        "restored file system {} from snapshot {snapshot_id}",
        fs.name
    ))
}
