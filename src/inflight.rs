//! The in-flight guard: at most one call per volume / name at a time. A
//! concurrent duplicate is refused at once (the caller answers ABORTED and
//! the sidecar retries), so different volumes never wait on each other and
//! there is no global lock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default, Debug)]
pub(crate) struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while the operation runs; releases the key on drop.
#[derive(Debug)]
pub(crate) struct Guard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Takes `key`, or `None` if another call holds it.
    pub(crate) fn try_acquire(&self, key: impl Into<String>) -> Option<Guard> {
        let key = key.into();
        let mut keys = self.keys.lock().expect("in-flight set poisoned");
        if !keys.insert(key.clone()) {
            return None;
        }
        Some(Guard {
            keys: self.keys.clone(),
            key,
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_key() {
        let f = InFlight::new();
        let a = f.try_acquire("vol:a").unwrap();
        assert!(f.try_acquire("vol:a").is_none());
        let _b = f.try_acquire("vol:b").expect("other keys are independent");
        drop(a);
        assert!(f.try_acquire("vol:a").is_some());
        assert!(f.try_acquire("vol:b").is_none(), "b is still held");
    }
}
