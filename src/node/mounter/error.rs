//! Why a mount, an unmount, a statfs or a mount-table read failed, and
//! which outcome each failure is for the CSI caller.

use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;

use super::super::mountinfo;
use super::super::paths::PathError;
use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MountError {
    #[error("{what} did not finish within {seconds:.1}s")]
    Timeout { what: String, seconds: f64 },
    /// A statfs of this file system is already stuck: seen failing.
    #[error("{0}")]
    Stuck(String),
    /// Not attempted because of a limit (other calls are stuck): nothing is
    /// known about this file system.
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Path(#[from] PathError),
    /// The server refused this node ("access denied by server"): its export
    /// rules do not admit the node's address.
    #[error("{0}")]
    Denied(String),
    /// Failed, and the message (e.g. `mount`'s own words) is all there is.
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: Errno,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Stat(#[from] StatFailure),
    #[error("read /proc/self/mountinfo: {0}")]
    Table(#[source] Arc<mountinfo::ReadError>),
    #[error("{what}: worker failed: {source}")]
    Worker {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("read-only remount of {} failed ({source}); the bind mount was removed", target.display())]
    Remount {
        target: PathBuf,
        #[source]
        source: crate::error::Cause,
    },
    #[error("could not unmount {}: {last}", target.display())]
    Unmount {
        target: PathBuf,
        /// The last step's failure.
        #[source]
        last: Box<MountError>,
    },
}

impl MountError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        MountError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn sys(what: impl Into<String>, source: Errno) -> Self {
        MountError::Sys {
            what: what.into(),
            source,
        }
    }
}

/// A statfs that failed; shared by every caller that joined it, so `Clone`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("statfs {}: {errno}", path.display())]
pub(crate) struct StatFailure {
    pub path: PathBuf,
    #[source]
    pub errno: Errno,
}

impl From<MountError> for Error {
    fn from(e: MountError) -> Self {
        let outcome: fn(String) -> Error = match &e {
            // Retryable and not final: kubelet tries again later.
            MountError::Timeout { .. } => Error::deadline_exceeded,
            MountError::Limit(_) => Error::resource_exhausted,
            MountError::Path(p) if p.is_caller_error() => Error::invalid_argument,
            MountError::Path(_) => Error::internal,
            // Stuck, refused (a node-following export may not have its rule
            // yet) or failed: UNAVAILABLE, and kubelet retries.
            _ => Error::unavailable,
        };
        outcome(e.to_string()).because(e)
    }
}
