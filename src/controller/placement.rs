//! Placement for `array: auto` StorageClasses: which of the arrays a class
//! allows gets a new volume.
//!
//! Safe to retry: before choosing, the file-system name is looked up on every
//! candidate (in parallel), so a CreateVolume retried after an unknown
//! outcome, a restart or a leader change finds the file system wherever the
//! first attempt put it. Within one process the first choice for a name is
//! also remembered, so a retry whose first array has become unreachable
//! waits for it (UNAVAILABLE) instead of creating a second file system
//! elsewhere.
//!
//! The choice: among the reachable candidates where the name is free, the
//! one with the most free space, never one with less free space than the
//! request. Free space comes from `arrays/space`, cached per array and
//! refreshed at most every [`SPACE_TTL`], less what the driver provisioned
//! there since (so a burst spreads instead of piling onto one array).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ControllerService;
use super::params::VolumeParams;
use crate::error::{Error, Result};
use crate::flashblade::models::FileSystem;
use crate::volume::ArrayName;
use crate::volume::naming;

/// How long an array's free space is trusted before it is read again.
pub(crate) const SPACE_TTL: Duration = Duration::from_secs(30);

/// How long the first choice for a name is remembered.
const CHOICE_TTL: Duration = Duration::from_secs(3600);

/// Remembered choices before old ones are dropped.
const MAX_CHOICES: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Space {
    /// Free bytes at the last read.
    measured: i64,
    /// Bytes placed there since (new file systems use nothing yet, so the
    /// array's figure would not show them before they fill).
    placed: i64,
    read_at: Instant,
}

impl Space {
    fn free(&self) -> i64 {
        self.measured - self.placed
    }
}

/// The placement state of a controller: free space per array and recent
/// choices per CSI name.
#[derive(Default)]
pub(crate) struct Placement {
    space: Mutex<HashMap<ArrayName, Space>>,
    choices: Mutex<HashMap<String, (ArrayName, Instant)>>,
    /// One read of `arrays/space` per array at a time: a burst waits for
    /// it rather than sending one each.
    reading: Mutex<HashMap<ArrayName, Arc<tokio::sync::Mutex<()>>>>,
    /// Arrays whose space answer was already judged (warned about once).
    judged: Mutex<std::collections::HashSet<ArrayName>>,
}

impl Placement {
    fn remembered(&self, name: &str) -> Option<ArrayName> {
        let choices = self.choices.lock().expect("placement lock");
        choices
            .get(name)
            .filter(|(_, at)| at.elapsed() < CHOICE_TTL)
            .map(|(a, _)| a.clone())
    }

    fn remember(&self, name: &str, array: &ArrayName) {
        let mut choices = self.choices.lock().expect("placement lock");
        if choices.len() >= MAX_CHOICES {
            choices.retain(|_, (_, at)| at.elapsed() < CHOICE_TTL);
            if choices.len() >= MAX_CHOICES {
                choices.clear();
            }
        }
        choices.insert(name.to_string(), (array.clone(), Instant::now()));
    }

    /// The cached free space of `array`, when fresh.
    fn fresh_free(&self, array: &ArrayName) -> Option<i64> {
        let space = self.space.lock().expect("placement lock");
        space
            .get(array)
            .filter(|s| s.read_at.elapsed() < SPACE_TTL)
            .map(Space::free)
    }

    fn record_free(&self, array: &ArrayName, measured: i64) {
        self.space.lock().expect("placement lock").insert(
            array.clone(),
            Space {
                measured,
                placed: 0,
                read_at: Instant::now(),
            },
        );
    }

    fn read_lock(&self, array: &ArrayName) -> Arc<tokio::sync::Mutex<()>> {
        self.reading
            .lock()
            .expect("placement lock")
            .entry(array.clone())
            .or_default()
            .clone()
    }

    /// Picks the candidate with the most free space that has room for
    /// `size`, and counts `size` against it. `free[i]` is `None` for
    /// candidates that are out (unreachable or unknown).
    fn take(&self, candidates: &[&ArrayName], free_now: &[Option<i64>], size: i64) -> Option<usize> {
        let mut space = self.space.lock().expect("placement lock");
        let mut best: Option<(usize, i64)> = None;
        for (i, (array, f)) in candidates.iter().zip(free_now).enumerate() {
            let Some(f) = space.get(*array).map(Space::free).or(*f) else {
                continue;
            };
            if f >= size && best.is_none_or(|(_, b)| f > b) {
                best = Some((i, f));
            }
        }
        let (i, _) = best?;
        if let Some(s) = space.get_mut(candidates[i]) {
            s.placed += size;
        }
        Some(i)
    }
}

/// What the look-up on the candidates found.
enum Found {
    /// The name exists on this candidate (live or destroyed): the create goes
    /// there and resolves it like any existing name.
    On(usize),
    /// Free everywhere that answered; `reachable[i]` says who answered.
    Nowhere {
        reachable: Vec<bool>,
        errors: Vec<String>,
    },
}

impl ControllerService {
    /// The index in `candidates` where the volume named `name` goes.
    pub(super) async fn place(&self, name: &str, candidates: &[VolumeParams], size: i64) -> Result<usize> {
        let arrays: Vec<&ArrayName> = candidates.iter().map(|p| &p.array).collect();
        let found = self.look_up_everywhere(name, candidates).await?;
        let (reachable, errors) = match found {
            Found::On(i) => {
                self.placement.remember(name, arrays[i]);
                return Ok(i);
            }
            Found::Nowhere { reachable, errors } => (reachable, errors),
        };
        if let Some(first) = self.placement.remembered(name)
            && let Some(i) = arrays.iter().position(|a| **a == first)
        {
            // An earlier attempt of this process chose it: only there.
            if reachable[i] {
                return Ok(i);
            }
            return Err(Error::unavailable(format!(
                "volume {name:?} was placed on array {first}, which does not answer now; not creating it elsewhere ({})",
                errors.join("; ")
            )));
        }
        let mut free_now = Vec::with_capacity(candidates.len());
        for (i, array) in arrays.iter().enumerate() {
            free_now.push(if reachable[i] {
                self.free_space(array).await
            } else {
                None
            });
        }
        if free_now.iter().all(Option::is_none) {
            return Err(Error::unavailable(format!(
                "no array this class allows answers ({}): {}",
                list(&arrays),
                errors.join("; ")
            )));
        }
        let i = self.placement.take(&arrays, &free_now, size).ok_or_else(|| {
            Error::resource_exhausted(format!(
                "no array this class allows has {size} bytes free (free: {})",
                arrays
                    .iter()
                    .zip(&free_now)
                    .map(|(a, f)| match f {
                        Some(f) => format!("{a} {f}"),
                        None => format!("{a} unreachable"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        self.placement.remember(name, arrays[i]);
        tracing::info!(array = %arrays[i], candidates = %list(&arrays), "placed by free space");
        Ok(i)
    }

    /// Looks the file-system name up on every candidate at once.
    async fn look_up_everywhere(&self, name: &str, candidates: &[VolumeParams]) -> Result<Found> {
        let lookups = candidates.iter().map(|p| async move {
            let fs_name = naming::fs_name_for(&p.name_prefix, name);
            let client = self.client(&p.array)?;
            client.find_file_system(&fs_name).await.map_err(Error::from)
        });
        let answers: Vec<Result<Option<FileSystem>>> = futures_util::future::join_all(lookups).await;
        let mut on = Vec::new();
        let mut reachable = Vec::new();
        let mut errors = Vec::new();
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Ok(Some(_)) => {
                    on.push(i);
                    reachable.push(true);
                }
                Ok(None) => reachable.push(true),
                Err(e) => {
                    errors.push(format!("{}: {e}", candidates[i].array));
                    reachable.push(false);
                }
            }
        }
        match on.as_slice() {
            [] => Ok(Found::Nowhere { reachable, errors }),
            [i] => Ok(Found::On(*i)),
            many => Err(Error::failed_precondition(format!(
                "volume {name:?} exists on several arrays ({}); resolve it on the arrays first",
                many.iter()
                    .map(|i| candidates[*i].array.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Free bytes on `array`: cached, or read now (`None` if it cannot be).
    pub(super) async fn free_space(&self, array: &ArrayName) -> Option<i64> {
        if let Some(f) = self.placement.fresh_free(array) {
            return Some(f);
        }
        let lock = self.placement.read_lock(array);
        let _reading = lock.lock().await;
        // Someone else may have read it while this call waited.
        if let Some(f) = self.placement.fresh_free(array) {
            return Some(f);
        }
        let client = self.client(array).ok()?;
        match client.array_space().await {
            Ok(s) => {
                if self
                    .placement
                    .judged
                    .lock()
                    .expect("placement lock")
                    .insert(array.clone())
                    && let Some(w) = crate::flashblade::assumptions::space_warning(&s)
                {
                    tracing::warn!(%array, "{w}");
                }
                let free = (s.capacity - s.space.used()).max(0);
                self.placement.record_free(array, free);
                Some(free)
            }
            Err(e) => {
                tracing::warn!(%array, error = %e, "free space unknown");
                None
            }
        }
    }
}

fn list(arrays: &[&ArrayName]) -> String {
    arrays
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
