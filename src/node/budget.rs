//! One node RPC's overall deadline and the steps within it.

use std::time::Duration;

use crate::error::{Error, Result};

/// Kept back from each step so the RPC still answers before its deadline.
const ANSWER_MARGIN: Duration = Duration::from_millis(25);

/// One node RPC's overall deadline: the shorter of the caller's (gRPC
/// deadline, less a margin) and the node's own for that RPC. Each step runs
/// within what is left of it (and within its own deadline), so no step can
/// stretch the call past it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    pub(super) until: tokio::time::Instant,
    pub(super) total: Duration,
    /// The whole RPC's `until` (later than `until` for a [`Budget::part`]).
    end: tokio::time::Instant,
}

impl Budget {
    pub(super) fn new(total: Duration) -> Self {
        let until = tokio::time::Instant::now() + total;
        Self {
            until,
            total,
            end: until,
        }
    }

    /// A part of this budget that ends after `d` at the latest.
    pub(super) fn part(&self, d: Duration) -> Self {
        let until = self.until.min(tokio::time::Instant::now() + d);
        Self {
            until,
            total: d,
            end: self.end,
        }
    }

    /// What is left of the whole RPC after this part.
    pub(super) fn rest(&self) -> Self {
        Self {
            until: self.end,
            ..*self
        }
    }

    /// Time spent since the budget began.
    pub(super) fn elapsed(&self) -> Duration {
        self.total
            .saturating_sub(self.until.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// What a step may still take.
    pub(super) fn left(&self) -> Duration {
        self.until
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(ANSWER_MARGIN)
    }

    /// Runs a step that has no deadline of its own within what is left.
    pub(super) async fn step<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.left(), f).await {
            Ok(r) => r,
            Err(_) => Err(Error::deadline_exceeded(format!(
                "{what}: the call's {:.1}s deadline passed",
                self.total.as_secs_f64()
            ))),
        }
    }
}
