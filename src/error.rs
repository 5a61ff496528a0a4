//! The driver's error type and the one place where errors become gRPC status
//! codes. The sidecars and kubelet decide whether to retry from the code, so
//! each mapping says why it was chosen.

use tonic::{Code, Status};

/// Errors a CSI handler can end with. Variants name the outcome the caller must
/// act on, not the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something unsupported.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named volume, snapshot or path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken by an object that does not match the request.
    #[error("{0}")]
    AlreadyExists(String),
    /// A capacity that the driver or the array cannot satisfy.
    #[error("{0}")]
    OutOfRange(String),
    /// The object is in a state that forbids the operation (e.g. an imported
    /// dataset volume that the driver must never delete).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another call for the same volume or name is in flight.
    #[error("{0}")]
    Aborted(String),
    /// The array or a mount is unreachable or overloaded for now.
    #[error("{0}")]
    Unavailable(String),
    /// The operation did not finish within its deadline; it may still complete.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// This RPC is not implemented by this driver or in this mode.
    #[error("{0}")]
    Unimplemented(String),
    /// The array refused our credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// A bug or an unexpected answer; the message says what happened.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::flashblade::Error> for Error {
    fn from(e: crate::flashblade::Error) -> Self {
        use crate::flashblade::Error as Fb;
        let text = e.to_string();
        match e {
            _ if e.is_not_found() => Error::NotFound(text),
            _ if e.is_already_exists() => Error::AlreadyExists(text),
            // The array refused the request as it stands (validation or
            // state): retrying the same request will not help until
            // something changes.
            Fb::Api { status: 400, .. } => Error::FailedPrecondition(text),
            Fb::Api { .. } | Fb::Protocol { .. } => Error::Internal(text),
            // Credentials, overload, unknown outcomes and unreachable arrays
            // are transient from the sidecar's point of view: it retries and
            // our idempotent lookups make the retry safe.
            Fb::Unauthorized { .. } | Fb::Unavailable { .. } | Fb::Ambiguous { .. } => {
                Error::Unavailable(text)
            }
            Fb::Timeout { .. } => Error::DeadlineExceeded(text),
            Fb::Version { .. } | Fb::Setup { .. } => Error::FailedPrecondition(text),
        }
    }
}

/// A name or id the array returned that the driver cannot use: the array
/// answered something it should not have.
pub fn from_array(e: crate::volume::NameError) -> Error {
    Error::Internal(format!("the array returned {e}"))
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            // Final: the sidecar records the error and will not succeed by
            // retrying the same request.
            Error::InvalidArgument(_) => Code::InvalidArgument,
            // Final for the request; kubelet treats NOT_FOUND on unpublish /
            // unstage as "already gone".
            Error::NotFound(_) => Code::NotFound,
            // Final: the provisioner must not retry a name that maps to a
            // different volume.
            Error::AlreadyExists(_) => Code::AlreadyExists,
            // Final: the capacity request cannot be met.
            Error::OutOfRange(_) => Code::OutOfRange,
            // Retried with backoff by the sidecars, but only an admin action
            // (or a state change) makes it succeed.
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            // Retried with backoff: the concurrent call will finish first.
            Error::Aborted(_) => Code::Aborted,
            // Retried: a transient array or network condition. Not final, so
            // the provisioner keeps the "maybe provisioned" state and replays
            // the same name, which our idempotent lookups resolve.
            Error::Unavailable(_) => Code::Unavailable,
            // Retried and not final: the work may have happened on the array.
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            // Final: the caller must not retry (per the CSI error scheme).
            Error::Unimplemented(_) => Code::Unimplemented,
            // Retried: fixing the credentials Secret makes it succeed.
            Error::Unauthenticated(_) => Code::Unauthenticated,
            // Retried by the sidecars; logged loudly.
            Error::Internal(_) => Code::Internal,
        };
        Status::new(code, bounded(err.to_string(), MAX_STATUS_MESSAGE))
    }
}

/// Longest status message sent. The message travels in a header
/// (percent-encoded, up to three times longer); C-core clients refuse
/// headers past 8 KiB, and a message echoing a 10 KB id helps nobody.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// Longest piece of caller input echoed inside a message.
const MAX_ECHO: usize = 96;

/// `s` cut to at most `max` bytes (on a character boundary), saying how
/// much was left out.
pub fn bounded(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut cut = max.saturating_sub(40);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("… ({} more bytes)", total - cut));
    s
}

/// Caller input for a message: quoted, cut to a readable length.
pub fn clip(input: &str) -> String {
    bounded(format!("{input:?}"), MAX_ECHO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_one_to_one() {
        let cases = [
            (Error::InvalidArgument("a".into()), Code::InvalidArgument),
            (Error::NotFound("a".into()), Code::NotFound),
            (Error::AlreadyExists("a".into()), Code::AlreadyExists),
            (Error::OutOfRange("a".into()), Code::OutOfRange),
            (Error::FailedPrecondition("a".into()), Code::FailedPrecondition),
            (Error::Aborted("a".into()), Code::Aborted),
            (Error::Unavailable("a".into()), Code::Unavailable),
            (Error::DeadlineExceeded("a".into()), Code::DeadlineExceeded),
            (Error::Unimplemented("a".into()), Code::Unimplemented),
            (Error::Unauthenticated("a".into()), Code::Unauthenticated),
            (Error::Internal("a".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), "a");
        }
    }

    #[test]
    fn messages_are_bounded() {
        let long = "é".repeat(10_000);
        let status = Status::from(Error::InvalidArgument(format!("volume id {long} is bad")));
        assert!(
            status.message().len() <= MAX_STATUS_MESSAGE,
            "{}",
            status.message().len()
        );
        assert!(status.message().ends_with("more bytes)"));
        assert!(clip(&long).len() <= MAX_ECHO);
        assert_eq!(clip("pvc-1"), "\"pvc-1\"");
    }
}
