//! Typed errors of the FlashBlade client. Messages name the array and never
//! carry the API token or the session token.

/// What went wrong talking to an array.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The array answered with an error it means (validation, not found,
    /// conflict), with its own message.
    #[error("array {array}: {message} (HTTP {status}{})", context.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Api {
        array: String,
        status: u16,
        message: String,
        context: Option<String>,
    },
    /// Login was refused (wrong or revoked API token), or the session was
    /// refused again right after a fresh login.
    #[error("array {array}: the API token was refused ({detail}); check the token file / Secret")]
    Unauthorized { array: String, detail: String },
    /// Still overloaded (429 / 503 / busy) or failing transiently when the
    /// deadline or the retry budget ran out.
    #[error("array {array}: unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        array: String,
        attempts: u32,
        last: String,
    },
    /// The call's deadline passed.
    #[error("array {array}: no answer within {seconds:.1}s ({what})")]
    Timeout {
        array: String,
        seconds: f64,
        what: String,
    },
    /// A change was sent and its outcome is unknown (timeout, dropped
    /// connection, 500/502/504): the caller must read the object back before
    /// trying again.
    #[error("array {array}: outcome of {what} unknown: {reason}")]
    Ambiguous {
        array: String,
        what: String,
        reason: String,
    },
    /// The array does not speak a REST version we support.
    #[error("array {array}: {0}", .detail)]
    Version { array: String, detail: String },
    /// An answer we could not understand.
    #[error("array {array}: unexpected answer: {detail}")]
    Protocol { array: String, detail: String },
    /// Local setup: token file, TLS, URL.
    #[error("array {array}: {detail}")]
    Setup { array: String, detail: String },
}

impl Error {
    /// The array said the named object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: 400 | 404, message, .. } if message.contains("does not exist"))
    }

    /// The array said the name is taken.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api { status: 400, message, .. } if message.contains("already exists"))
    }
}
