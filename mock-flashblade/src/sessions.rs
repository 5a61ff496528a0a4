//! The session table every versioned request is checked against, and the
//! API token that buys a session. Sessions are not array state: they are
//! not persisted and end with the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::api::{ApiError, ApiResult};
use crate::state::new_id;

struct Session {
    created: Instant,
    last_used: Instant,
}

/// Issued session tokens and the API token that buys one.
pub(crate) struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    api_token: Mutex<String>,
    /// Sessions end this long after login (`--session-ttl`).
    ttl: Option<Duration>,
}

fn token_matches(given: &str, expected: &str) -> bool {
    // Constant-time comparison: no early exit on the first differing byte.
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
}

fn auth_token(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-auth-token").and_then(|v| v.to_str().ok())
}

impl Sessions {
    pub(crate) fn new(api_token: String, ttl: Option<Duration>) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            api_token: Mutex::new(api_token),
            ttl,
        }
    }

    pub(crate) fn set_api_token(&self, token: &str) {
        *self.api_token.lock().unwrap() = token.to_string();
    }

    /// A new session token when `given` is the API token.
    pub(crate) fn login(&self, given: &str) -> Option<String> {
        let expected = self.api_token.lock().unwrap().clone();
        if given.is_empty() || !token_matches(given, &expected) {
            return None;
        }
        let token = new_id();
        let now = Instant::now();
        self.table.lock().unwrap().insert(
            token.clone(),
            Session {
                created: now,
                last_used: now,
            },
        );
        Some(token)
    }

    /// Ends the session a request carries, if any.
    pub(crate) fn end(&self, headers: &HeaderMap) {
        if let Some(t) = auth_token(headers) {
            self.table.lock().unwrap().remove(t);
        }
    }

    /// Ends every session, as an array restart would.
    pub(crate) fn expire_all(&self) -> usize {
        let mut s = self.table.lock().unwrap();
        let n = s.len();
        s.clear();
        n
    }

    pub(crate) fn len(&self) -> usize {
        self.table.lock().unwrap().len()
    }

    pub(crate) fn tokens(&self) -> Vec<String> {
        self.table.lock().unwrap().keys().cloned().collect()
    }

    /// Checks the request's session (by TTL and the array's `idle_timeout`,
    /// in ms, 0 = none) and marks it used.
    pub(crate) fn authorize(&self, headers: &HeaderMap, idle_ms: i64) -> ApiResult<()> {
        let Some(token) = auth_token(headers) else {
            return Err(ApiError::new(401, "Authentication required.", None));
        };
        let mut sessions = self.table.lock().unwrap();
        let now = Instant::now();
        let expired = match sessions.get(token) {
            None => true,
            Some(s) => {
                self.ttl.is_some_and(|ttl| now.duration_since(s.created) > ttl)
                    || (idle_ms > 0
                        && now.duration_since(s.last_used) > Duration::from_millis(idle_ms as u64))
            }
        };
        if expired {
            sessions.remove(token);
            // FlashBlade answers 403 for an expired API-token session.
            return Err(ApiError::new(403, "Session has expired.", None));
        }
        if let Some(s) = sessions.get_mut(token) {
            s.last_used = now;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(token_matches("T-abc", "T-abc"));
        assert!(!token_matches("T-abd", "T-abc"));
        assert!(!token_matches("T-ab", "T-abc"));
        assert!(!token_matches("", "T-abc"));
    }
}
