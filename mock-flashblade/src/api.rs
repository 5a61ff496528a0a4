//! Request/response plumbing shared by the resources: the extractors handlers
//! take (query parameters, the JSON body, the API version), the FlashBlade
//! error body, the success answer, and the 2.x list envelope (filter, sort,
//! paging).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::filter;

/// The oldest and newest REST 2.x minor versions served.
pub(crate) const MIN_MINOR: u32 = 0;
pub(crate) const MAX_MINOR: u32 = 17;

/// What `api_version` lists: 1.x as a real array does, though only 2.x
/// resources are served.
pub(crate) fn api_versions() -> Vec<String> {
    let mut v: Vec<String> = (0..=12).map(|m| format!("1.{m}")).collect();
    v.extend((MIN_MINOR..=MAX_MINOR).map(|m| format!("2.{m}")));
    v
}

/// Parses `/api/<major>.<minor>/<resource>`.
pub(crate) fn split_versioned(path: &str) -> Option<(u32, u32, &str)> {
    let rest = path.strip_prefix("/api/")?;
    let (ver, resource) = rest.split_once('/')?;
    let (major, minor) = ver.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?, resource))
}

/// An API error as FlashBlade reports it: an HTTP status and one error item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) context: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: u16, message: impl Into<String>, context: Option<&str>) -> Self {
        Self {
            status,
            message: message.into(),
            context: context.map(str::to_string),
        }
    }

    /// FlashBlade answers 400 for validation errors, missing objects and
    /// conflicts alike.
    pub(crate) fn bad(message: impl Into<String>, context: Option<&str>) -> Self {
        Self::new(400, message, context)
    }

    pub(crate) fn body(&self) -> Value {
        let item = json!({"context": self.context, "message": self.message});
        if matches!(self.status, 401 | 403 | 429) {
            // The gateway's shape (top-level message) plus the API's shape, so
            // clients that read either find the text.
            json!({"message": self.message, "errors": [item]})
        } else {
            json!({"errors": [item]})
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A JSON answer with a status; `None` is an empty body (no content type).
pub(crate) fn json_response(status: u16, body: Option<&Value>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match body {
        Some(v) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(v).unwrap_or_default(),
        )
            .into_response(),
        None => status.into_response(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, Some(&self.body()))
    }
}

/// A successful API answer: 200 with the JSON, or with an empty body for
/// `Value::Null` (DELETE). A list's continuation token is repeated in
/// `x-next-token`, as the array does.
pub(crate) struct Reply(pub Value);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        if self.0.is_null() {
            return json_response(200, None);
        }
        let mut resp = json_response(200, Some(&self.0));
        if let Some(t) = self.0.get("continuation_token").and_then(Value::as_str)
            && let Ok(v) = HeaderValue::from_str(t)
        {
            resp.headers_mut().insert("x-next-token", v);
        }
        resp
    }
}

/// The REST 2.x minor version of a versioned request (set by the router's
/// version check).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ApiVersion(pub u32);

/// Admits a request made at REST 2.`MINOR` or later: resources added in a
/// later release are unknown to older versions. Put it before the body in a
/// handler's arguments, so the version is checked first.
pub(crate) struct Since<const MINOR: u32>;

impl<S: Send + Sync, const MINOR: u32> FromRequestParts<S> for Since<MINOR> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<ApiVersion>() {
            Some(ApiVersion(minor)) if *minor >= MINOR => Ok(Since),
            _ => {
                let path = parts.uri.path();
                let resource = split_versioned(path).map_or(path, |(_, _, r)| r);
                Err(ApiError::new(
                    404,
                    format!("{resource} requires API version 2.{MINOR} or later."),
                    None,
                ))
            }
        }
    }
}

/// The request body, already checked to be JSON by the router (so a
/// malformed body is refused before the route is looked at, as on the array).
#[derive(Clone, Debug)]
pub(crate) struct JsonBody(pub Value);

/// A handler's decoded request body: a JSON object (GET and DELETE bodies
/// are ignored, and an absent or null body reads as `{}`). Type errors name
/// the field.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let v = match parts.extensions.remove::<JsonBody>() {
            Some(JsonBody(Value::Null)) | None => json!({}),
            Some(JsonBody(v)) if v.is_object() => v,
            Some(_) => return Err(ApiError::bad("The request body must be a JSON object.", None)),
        };
        serde_path_to_error::deserialize(v)
            .map(Body)
            .map_err(|e| ApiError::bad(format!("Invalid request body: {e}."), None))
    }
}

/// For a number field where null (or "") clears the value rather than
/// leaving it unchanged: absent → `None` (via `#[serde(default)]`), null or
/// "" → `Some(None)`, a number → `Some(Some(n))`. Range checks are the
/// operation's, so their messages stay FlashBlade's.
pub(crate) fn clearable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Some(None)),
        Value::String(s) if s.is_empty() => Ok(Some(None)),
        Value::Number(n) => n
            .as_i64()
            .map(|v| Some(Some(v)))
            .ok_or_else(|| D::Error::custom(format!("{n} is out of range"))),
        other => Err(D::Error::custom(format!(
            "invalid value {other}, expected an integer, null or \"\""
        ))),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Query::parse(parts.uri.query()))
    }
}

/// Decoded query parameters, in the order sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A comma-separated list parameter; `None` when absent.
    pub(crate) fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }

    pub(crate) fn bool(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad(format!("Invalid value for {key}: {v}."), None)),
        }
    }

    pub(crate) fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad(format!("Invalid value for {key}: {v}."), None)),
        }
    }

    /// `names` and `ids` select objects; they cannot be combined.
    pub(crate) fn names_or_ids(&self) -> ApiResult<Option<Selector>> {
        match (self.list("names"), self.list("ids")) {
            (Some(_), Some(_)) => Err(ApiError::bad("names and ids cannot be used together.", None)),
            (Some(n), None) => Ok(Some(Selector::Names(n))),
            (None, Some(i)) => Ok(Some(Selector::Ids(i))),
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Selector {
    Names(Vec<String>),
    Ids(Vec<String>),
}

/// Largest page the mock returns; larger limits are lowered silently.
pub(crate) const MAX_LIMIT: i64 = 5000;
const TOKEN_SALT: u64 = 0x5eed_f1a5_4b1a_de00;

fn encode_token(offset: usize) -> String {
    format!("{:016x}", (offset as u64) ^ TOKEN_SALT)
}

fn decode_token(token: &str) -> ApiResult<usize> {
    u64::from_str_radix(token, 16)
        .ok()
        .filter(|_| token.len() == 16)
        .map(|v| (v ^ TOKEN_SALT) as usize)
        .ok_or_else(|| ApiError::bad("Invalid continuation_token.", None))
}

fn sort_key_cmp(a: &Value, b: &Value, field: &str) -> std::cmp::Ordering {
    let get = |v: &Value| {
        field
            .split('.')
            .try_fold(v, |c, k| c.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (x, y) = (get(a), get(b));
    match (&x, &y) {
        (Value::Number(p), Value::Number(q)) => p
            .as_f64()
            .partial_cmp(&q.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(p), Value::String(q)) => p.cmp(q),
        (Value::Bool(p), Value::Bool(q)) => p.cmp(q),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => x.to_string().cmp(&y.to_string()),
    }
}

/// Builds the GET envelope `{continuation_token, total_item_count, items,
/// total}` from every matching item, applying `filter`, `sort`, `offset`,
/// `continuation_token`, `limit` and `total_only`.
pub(crate) fn list_envelope(
    mut items: Vec<Value>,
    q: &Query,
    total: impl Fn(&[Value]) -> Value,
) -> ApiResult<Value> {
    if let Some(f) = q.get("filter") {
        let expr = filter::parse(f).map_err(|e| ApiError::bad(format!("Invalid filter: {e}."), Some(f)))?;
        items.retain(|i| filter::eval(&expr, i));
    }
    let sorted = if let Some(sort) = q.list("sort") {
        for key in sort.iter().rev() {
            let (field, desc) = match key.strip_suffix('-') {
                Some(f) => (f.to_string(), true),
                None => (key.clone(), false),
            };
            items.sort_by(|a, b| {
                let o = sort_key_cmp(a, b, &field);
                if desc { o.reverse() } else { o }
            });
        }
        true
    } else {
        false
    };
    let count = items.len();
    let total_value = total(&items);
    if q.bool("total_only")? == Some(true) {
        return Ok(
            json!({"continuation_token": null, "total_item_count": count, "items": [], "total": total_value}),
        );
    }
    let mut start = q.int("offset")?.unwrap_or(0);
    if start < 0 {
        return Err(ApiError::bad("offset must not be negative.", None));
    }
    if let Some(t) = q.get("continuation_token") {
        start = decode_token(t)? as i64;
    }
    let limit = match q.int("limit")? {
        Some(l) if l < 0 => return Err(ApiError::bad("limit must not be negative.", None)),
        Some(l) => l.min(MAX_LIMIT) as usize,
        None => MAX_LIMIT as usize,
    };
    let start = (start as usize).min(count);
    let end = (start + limit).min(count);
    let page: Vec<Value> = items[start..end].to_vec();
    let token = if end < count && !sorted && limit > 0 {
        Value::String(encode_token(end))
    } else {
        Value::Null
    };
    Ok(json!({
        "continuation_token": token,
        "total_item_count": count,
        "items": page,
        "total": total_value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_list_mixes_1x_and_2x_in_order() {
        let v = api_versions();
        assert_eq!(v.first().unwrap(), "1.0");
        assert!(v.contains(&"1.12".to_string()));
        assert_eq!(v.last().unwrap(), &format!("2.{MAX_MINOR}"));
    }

    #[test]
    fn versioned_paths() {
        assert_eq!(
            split_versioned("/api/2.17/file-systems"),
            Some((2, 17, "file-systems"))
        );
        assert_eq!(
            split_versioned("/api/1.2/quotas/users"),
            Some((1, 2, "quotas/users"))
        );
        assert_eq!(split_versioned("/api/login"), None);
        assert_eq!(split_versioned("/api/x.1/arrays"), None);
    }

    fn items(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("fs-{i:03}"), "n": i}))
            .collect()
    }

    #[test]
    fn paging_with_tokens_visits_every_item_once() {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = Query(vec![("limit".into(), "7".into())]);
            if let Some(t) = &token {
                q.0.push(("continuation_token".into(), t.clone()));
            }
            let env = list_envelope(items(30), &q, |_| json!({})).unwrap();
            assert_eq!(env["total_item_count"], 30);
            for i in env["items"].as_array().unwrap() {
                seen.push(i["n"].as_u64().unwrap());
            }
            match env["continuation_token"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn sort_offset_total_only_and_bad_token() {
        let q = Query(vec![
            ("sort".into(), "n-".into()),
            ("limit".into(), "2".into()),
            ("offset".into(), "1".into()),
        ]);
        let env = list_envelope(items(5), &q, |_| json!({})).unwrap();
        assert_eq!(env["items"][0]["n"], 3);
        assert!(env["continuation_token"].is_null());
        let q = Query(vec![("total_only".into(), "true".into())]);
        let env = list_envelope(items(5), &q, |v| json!({"count": v.len()})).unwrap();
        assert_eq!(env["items"].as_array().unwrap().len(), 0);
        assert_eq!(env["total"]["count"], 5);
        let q = Query(vec![("continuation_token".into(), "garbage".into())]);
        assert_eq!(
            list_envelope(items(5), &q, |_| json!({})).unwrap_err().status,
            400
        );
        let q = Query(vec![("limit".into(), "0".into())]);
        let env = list_envelope(items(5), &q, |_| json!({})).unwrap();
        assert_eq!(env["total_item_count"], 5);
        assert_eq!(env["items"].as_array().unwrap().len(), 0);
    }
}
