//! Discovery and authentication routes: `api_version`, `login-banner`,
//! API-token login and logout, on plain and versioned paths.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;

use crate::api::{ApiError, api_versions, json_response, split_versioned};
use crate::gate::unmatched;
use crate::shared::Shared;

/// Discovery and login routes; none of them needs a session.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    // Only GET is served here; anything else is an unknown path to the array.
    let discovery = |r: axum::routing::MethodRouter<Arc<Shared>>| r.head(not_found).fallback(not_found);
    Router::new()
        .route(
            "/api/api_version",
            discovery(get(|| async {
                json_response(200, Some(&json!({"versions": api_versions()})))
            })),
        )
        .route(
            "/api/login-banner",
            discovery(get(|| async {
                json_response(200, Some(&json!({"login_banner": ""})))
            })),
        )
        .route("/api/login", post(login).fallback(method_not_allowed))
        .route("/api/logout", post(logout).fallback(method_not_allowed))
        .route("/api/{version}/login", any(versioned_login))
        .route("/api/{version}/logout", any(versioned_logout))
}

async fn not_found() -> ApiError {
    ApiError::new(404, "Not found.", None)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(405, "Method not allowed.", None)
}

/// `/api/2.N/login` and `/logout` answer for any 2.x minor; other versions
/// are treated like any unknown versioned path.
async fn versioned_login(state: State<Arc<Shared>>, req: Request) -> Response {
    if !matches!(split_versioned(req.uri().path()), Some((2, _, _))) {
        return unmatched(state, req).await;
    }
    if req.method() != Method::POST {
        return method_not_allowed().await.into_response();
    }
    login(state, req.headers().clone()).await
}

async fn versioned_logout(state: State<Arc<Shared>>, req: Request) -> Response {
    if !matches!(split_versioned(req.uri().path()), Some((2, _, _))) {
        return unmatched(state, req).await;
    }
    if req.method() != Method::POST {
        return method_not_allowed().await.into_response();
    }
    logout(state, req.headers().clone()).await
}

async fn login(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let given = headers
        .get("api-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(token) = shared.sessions.login(given) else {
        shared.counters.lock().unwrap().failed_logins += 1;
        return ApiError::new(401, "Invalid API token.", None).into_response();
    };
    shared.counters.lock().unwrap().logins += 1;
    let mut resp = json_response(200, Some(&json!({"username": "pureuser"})));
    resp.headers_mut()
        .insert("x-auth-token", HeaderValue::from_str(&token).expect("hex token"));
    resp
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.sessions.end(&headers);
    shared.counters.lock().unwrap().logouts += 1;
    json_response(200, None)
}
