//! The space poll behind the volume and array gauges: every interval, per
//! array, one read of the array's space and one listing of the driver's file
//! systems (the same name prefixes as ListVolumes), recorded into the
//! metrics. A scrape only reads what the last poll recorded, so it never
//! reaches the array; the poll runs one array at a time, never more often
//! than the interval (at least 10s), through the client's in-flight bound.

use std::sync::Arc;
use std::time::Duration;

use super::ControllerService;
use crate::config::ArrayConfig;
use crate::flashblade::ArrayClient;
use crate::flashblade::filter::Filter;
use crate::flashblade::models::{FileSystem, Page};
use crate::flashblade::ops::collect_page;
use crate::metrics::{Metrics, VolumeUsage};
use crate::volume::{DeletePolicy, VolumeId};

impl ControllerService {
    /// The poll loop (runs until dropped), polling at once and then every
    /// `interval`.
    pub(crate) fn space_poll(&self, interval: Duration) -> impl Future<Output = ()> + Send + 'static {
        let arrays: Vec<(ArrayConfig, Arc<ArrayClient>)> = self
            .config
            .arrays
            .iter()
            .filter_map(|a| self.arrays.get(&a.name).map(|c| (a.clone(), c.clone())))
            .collect();
        let metrics = self.metrics.clone();
        async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = vec![false; arrays.len()];
            loop {
                tick.tick().await;
                for (i, (array, client)) in arrays.iter().enumerate() {
                    let r = match tokio::time::timeout(interval, poll_array(array, client, &metrics)).await {
                        Ok(r) => r,
                        Err(_) => Err(PollError::Timeout(interval.as_secs())),
                    };
                    metrics.array_polled(array.name.as_str(), r.is_ok());
                    match r {
                        Ok(()) if failing[i] => {
                            failing[i] = false;
                            tracing::info!(array = %array.name, "metrics poll: array answers again");
                        }
                        Err(e) if !failing[i] => {
                            failing[i] = true;
                            tracing::warn!(array = %array.name, error = %e, "metrics poll failed; volume figures are stale");
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Why a metrics poll of an array failed.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Array(#[from] crate::flashblade::Error),
    #[error("no answer within {0}s")]
    Timeout(u64),
}

async fn poll_array(array: &ArrayConfig, client: &ArrayClient, metrics: &Metrics) -> Result<(), PollError> {
    let space = client.array_space().await?;
    metrics.array_space(array.name.as_str(), space.capacity, space.space.used());
    let mut prefixes = vec![array.name_prefix.clone()];
    prefixes.extend(array.extra_name_prefixes.iter().cloned());
    let filter = Filter::name_prefixes(&prefixes);
    // Each page is reduced to its figures as it arrives: the whole listing
    // of thousands of file systems is never held at once.
    let usage = |fs: FileSystem| {
        // The id ListVolumes reports for the file system.
        let id = VolumeId::managed(&array.name, &fs.name, &fs.id, DeletePolicy::Destroy).ok()?;
        Some(VolumeUsage {
            volume_id: id.to_string(),
            provisioned_bytes: fs.provisioned.unwrap_or(0),
            used_bytes: fs.space.used(),
            hard_limit: fs.hard_limit_enabled,
        })
    };
    let volumes = collect_page(
        &filter,
        "",
        None,
        |v: &VolumeUsage| &v.volume_id,
        |f, limit, token, sorted| async move {
            let page = client
                .list_file_systems_sorted(&f, Some(false), limit, token.as_deref(), sorted)
                .await?;
            Ok(Page {
                items: page.items.into_iter().filter_map(usage).collect(),
                continuation_token: page.continuation_token,
                total_item_count: page.total_item_count,
            })
        },
    )
    .await?;
    metrics.volumes(array.name.as_str(), &volumes);
    Ok(())
}
