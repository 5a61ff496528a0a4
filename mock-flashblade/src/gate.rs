//! The checks a versioned request passes before its route: a served
//! version, a live session and a JSON body, in the array's order.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiVersion, JsonBody, MAX_MINOR, MIN_MINOR, split_versioned};
use crate::shared::Shared;

/// Versioned paths: a served 2.x version, then a live session, then a JSON
/// body, in the array's order (a bad version is 404 even without a session;
/// a bad body is 400 whatever the route).
async fn admit(shared: &Shared, req: Request) -> Result<Request, ApiError> {
    let Some((major, minor, _)) = split_versioned(req.uri().path()) else {
        return Err(ApiError::new(404, "Not found.", None));
    };
    if major == 1 {
        return Err(ApiError::new(
            404,
            "REST 1.x resources are not served by mock-flashblade; use 2.x.",
            None,
        ));
    }
    if major != 2 || !(MIN_MINOR..=MAX_MINOR).contains(&minor) {
        return Err(ApiError::new(
            404,
            format!("API version {major}.{minor} is not supported."),
            None,
        ));
    }
    let idle_ms = shared.array.lock().unwrap().st.idle_timeout;
    shared.sessions.authorize(req.headers(), idle_ms)?;
    let (mut parts, body) = req.into_parts();
    let json = if matches!(parts.method, Method::GET | Method::DELETE) {
        json!({})
    } else {
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        if bytes.is_empty() {
            json!({})
        } else {
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| ApiError::bad(format!("Invalid JSON in request body: {e}."), None))?
        }
    };
    parts.extensions.insert(JsonBody(json));
    parts.extensions.insert(ApiVersion(minor));
    Ok(Request::from_parts(parts, axum::body::Body::empty()))
}

pub(crate) async fn admit_versioned(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // axum would answer HEAD from the GET handler; the array refuses it.
    let head = req.method() == Method::HEAD;
    match admit(&shared, req).await {
        Ok(_) if head => ApiError::new(405, "Method not allowed.", None).into_response(),
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Paths no route serves: 404, after the version and session checks when
/// the path is versioned.
pub(crate) async fn unmatched(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if split_versioned(req.uri().path()).is_some()
        && let Err(e) = admit(&shared, req).await
    {
        return e.into_response();
    }
    ApiError::new(404, "Not found.", None).into_response()
}
