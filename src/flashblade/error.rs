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
        /// What the refusal means, decided once from the answer.
        kind: ApiErrorKind,
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
        /// Why the last attempt failed.
        #[source]
        last: Transport,
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
        #[source]
        reason: Transport,
    },
    /// The array does not speak a REST version we support.
    #[error("array {array}: {0}", .detail)]
    Version { array: String, detail: String },
    /// An answer we could not understand.
    #[error("array {array}: unexpected answer: {detail}")]
    Protocol { array: String, detail: String },
    /// Local setup: token file, TLS, URL; `source` is the io, TLS or URL
    /// error (never the token: only the token file's path is named).
    #[error("array {array}: {detail}")]
    Setup {
        array: String,
        detail: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Why an attempt got no answer the driver could use.
#[derive(Debug, thiserror::Error)]
pub enum Transport {
    /// The request or its answer was lost on the way (connection, TLS,
    /// reset). reqwest's errors name the URL, never a header, so the
    /// tokens stay out.
    #[error("{}{}", step.prefix(), super::describe_reqwest_error(source))]
    Http {
        step: Step,
        #[source]
        source: reqwest::Error,
    },
    /// The array answered "not now" (429, 503, busy) or failed (5xx).
    #[error("{}HTTP {status}{}", step.prefix(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        step: Step,
        status: u16,
        message: String,
    },
    #[error("no answer before the deadline")]
    Deadline,
    /// Every attempt to create was ambiguous and nothing was created.
    #[error("{what}: outcome unknown on every attempt and nothing was created")]
    NothingCreated { what: String },
}

/// Which exchange an attempt was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Version,
    Login,
    Request,
    /// Reading a request's answer.
    Answer,
}

impl Step {
    fn prefix(self) -> &'static str {
        match self {
            Step::Version => "api_version: ",
            Step::Login => "login: ",
            Step::Request => "",
            Step::Answer => "reading the answer: ",
        }
    }
}

/// What an array's refusal means to the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The named object does not exist.
    NotFound,
    /// The name is taken (by a live or a destroyed object).
    AlreadyExists,
    /// Anything else the array refused: validation or the object's state.
    Refused,
}

impl ApiErrorKind {
    /// FlashBlade REST 2.x error bodies carry a message and a context (the
    /// object), but no machine-readable code, and the array answers 400 for
    /// not-found and conflicts alike (404 for unknown endpoints and for
    /// objects on some versions). So the kind follows from the status and the
    /// message's wording: here, once, as each answer arrives, and nowhere else.
    pub(crate) fn classify(status: u16, message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        match status {
            400 | 404 if m.contains("does not exist") || m.contains("not found") => ApiErrorKind::NotFound,
            400 | 409 if m.contains("already exists") => ApiErrorKind::AlreadyExists,
            _ => ApiErrorKind::Refused,
        }
    }
}

impl Error {
    /// The array said the named object does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Api {
                kind: ApiErrorKind::NotFound,
                ..
            }
        )
    }

    /// The array said the name is taken.
    pub(crate) fn is_already_exists(&self) -> bool {
        matches!(
            self,
            Error::Api {
                kind: ApiErrorKind::AlreadyExists,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        for (status, message, kind) in [
            (400, "File system does not exist.", ApiErrorKind::NotFound),
            (404, "Snapshot not found.", ApiErrorKind::NotFound),
            (400, "File system already exists.", ApiErrorKind::AlreadyExists),
            (
                400,
                "Requested size is below current usage.",
                ApiErrorKind::Refused,
            ),
            // A server error never reads as "gone", whatever it says.
            (500, "does not exist", ApiErrorKind::Refused),
        ] {
            assert_eq!(
                ApiErrorKind::classify(status, message),
                kind,
                "{status} {message}"
            );
        }
    }
}
