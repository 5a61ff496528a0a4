//! What every connection shares: the simulated array, the session table,
//! the fault settings and their limiters, and the counters; and what a
//! request knows of its connection.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::faults::{Bucket, CounterStore, Faults};
use crate::sessions::Sessions;
use crate::state::{self, Array};

/// Requests per second allowed when no rate limit is configured.
const DEFAULT_RATE_LIMIT: f64 = 100_000.0;

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) array: Mutex<Array>,
    pub(crate) sessions: Sessions,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) semaphore: Mutex<Option<Arc<Semaphore>>>,
    pub(crate) bucket: Mutex<Option<Bucket>>,
    pub(crate) counters: Mutex<CounterStore>,
    pub(crate) in_flight: AtomicU64,
}

impl Shared {
    pub(crate) fn new(array: Array, sessions: Sessions, faults: Faults) -> Self {
        let s = Self {
            array: Mutex::new(array),
            sessions,
            faults: Mutex::new(Faults::default()),
            semaphore: Mutex::new(None),
            bucket: Mutex::new(None),
            counters: Mutex::new(CounterStore::default()),
            in_flight: AtomicU64::new(0),
        };
        s.set_faults(faults);
        s
    }

    pub(crate) fn set_faults(&self, f: Faults) {
        *self.semaphore.lock().unwrap() = f.max_concurrency.map(|n| Arc::new(Semaphore::new(n.max(1))));
        // Like the array's gateway, a limiter is always there (so every
        // answer carries RateLimit-* headers); without --rate-limit it is
        // set far above anything a test or benchmark sends.
        *self.bucket.lock().unwrap() = Some(match f.rate_limit.filter(|r| *r > 0.0) {
            Some(r) => Bucket::new(r, f.rate_burst),
            None => Bucket::new(DEFAULT_RATE_LIMIT, Some(DEFAULT_RATE_LIMIT as u32)),
        });
        *self.faults.lock().unwrap() = f;
    }

    /// Eradicates what is due and writes the state if it changed.
    pub(crate) fn sweep(&self) {
        let mut a = self.array.lock().unwrap();
        if a.sweep(state::now_ms()) {
            a.save();
        }
        a.flush();
    }
}

/// What a request knows about its connection: the peer (the control
/// endpoint answers loopback only) and how to drop it (reset faults).
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    pub(crate) kill: Arc<Notify>,
}

impl state::Store for Shared {
    fn array(&self) -> &Mutex<Array> {
        &self.array
    }
}
