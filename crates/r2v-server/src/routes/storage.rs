//! Storage uploads in both official clients' flows (PROTOCOL §5):
//! - JS: `POST /storage/upload/initiate` then `PUT upload_url` (no auth header; the URL
//!   is signed), and `initiate-multipart` with part `PUT`s and a `complete` for files over 90 MB;
//! - Python: `POST /storage/auth/token` then `POST /files/upload` with the bearer token,
//!   and the `storage_type=gcs` fallback (initiate + `PUT`).
//!
//! Every stored file gets a record with its owner and expiry, and a signed URL.

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::files::safe_file_name;
use crate::routes::read_body;
use crate::state::AppState;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use r2v_store::{FileRecord, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How long an upload URL stays valid.
const UPLOAD_URL_SECONDS: i64 = 3600;

/// The JSON body of an initiate call.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct InitiateBody {
    /// MIME type of the file.
    pub content_type: Option<String>,
    /// The file's name.
    pub file_name: Option<String>,
}

/// Query of a signed upload URL.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    owner: String,
    exp: String,
    ttl: String,
    sig: String,
}

/// Lifetime of a stored file: the lifecycle header when given, capped by retention.
fn file_ttl(state: &AppState, headers: &HeaderMap) -> i64 {
    [
        "x-fal-object-lifecycle",
        "x-fal-object-lifecycle-preference",
    ]
    .iter()
    .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
    .filter_map(|v| serde_json::from_str::<Value>(v).ok())
    .find_map(|v| v["expiration_duration_seconds"].as_i64())
    .filter(|&s| s > 0)
    .map_or(state.config.retention_seconds, |s| {
        s.min(state.config.retention_seconds)
    })
}

fn parse_initiate(bytes: &[u8]) -> Result<InitiateBody, ApiError> {
    if bytes.is_empty() {
        return Ok(InitiateBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "The body must be {{\"content_type\", \"file_name\"}} JSON: {e}"
        ))
    })
}

/// Signed upload URL fields: `(upload_id, name, owner, exp, ttl)`.
fn upload_signature(
    state: &AppState,
    kind: &str,
    upload_id: &str,
    name: &str,
    owner: &str,
    exp: &str,
    ttl: &str,
) -> String {
    state.files.sign(kind, &[upload_id, name, owner, exp, ttl])
}

async fn initiate_common(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    kind: &str,
) -> Result<Value, ApiError> {
    let caller = auth::authenticate(state, headers).await?;
    let body = parse_initiate(&read_body(headers, body, 64 * 1024).await?)?;
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let name = safe_file_name(body.file_name.as_deref().unwrap_or("upload.bin"));
    let ttl = file_ttl(state, headers).to_string();
    let exp = (now_ms() / 1000 + UPLOAD_URL_SECONDS).to_string();
    let sig = upload_signature(state, kind, &upload_id, &name, &caller.owner, &exp, &ttl);
    let base = state.base_url(headers);
    let route = if kind == "upload" { "put" } else { "multipart" };
    let upload_url = format!(
        "{base}/storage/upload/{route}/{upload_id}/{name}?owner={}&exp={exp}&ttl={ttl}&sig={sig}",
        caller.owner
    );
    let path = format!("uploads/{upload_id}/{name}");
    let file_expiry = now_ms() / 1000 + ttl.parse::<i64>().unwrap_or(0);
    Ok(json!({ "upload_url": upload_url, "file_url": state.files.url(&base, &path, file_expiry) }))
}

/// `POST /storage/upload/initiate?storage_type=fal-cdn-v3|gcs`.
pub async fn initiate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    initiate_common(&state, &headers, body, "upload")
        .await
        .map(Json)
}

/// `POST /storage/upload/initiate-multipart?storage_type=fal-cdn-v3`.
pub async fn initiate_multipart(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    initiate_common(&state, &headers, body, "multipart")
        .await
        .map(Json)
}

fn check_upload(
    state: &AppState,
    kind: &str,
    upload_id: &str,
    name: &str,
    q: &UploadQuery,
) -> Result<i64, ApiError> {
    let fresh = q.exp.parse::<i64>().is_ok_and(|e| e >= now_ms() / 1000);
    if !fresh
        || !state
            .files
            .verify(kind, &[upload_id, name, &q.owner, &q.exp, &q.ttl], &q.sig)
    {
        return Err(ApiError::NotFound("Upload URL not found or expired".into()));
    }
    q.ttl
        .parse()
        .map_err(|_| ApiError::NotFound("Upload URL not found or expired".into()))
}

async fn save(
    state: &AppState,
    path: &str,
    owner: &str,
    content_type: &str,
    bytes: Bytes,
    ttl: i64,
) -> Result<(), ApiError> {
    let size = bytes.len() as i64;
    state
        .files
        .put(path, bytes)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .insert_file(FileRecord {
            path: path.to_owned(),
            owner: owner.to_owned(),
            request_id: None,
            content_type: content_type.to_owned(),
            size,
            created_at: now_ms(),
            expires_at: now_ms() + ttl * 1000,
        })
        .await?;
    Ok(())
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// `PUT /storage/upload/put/{upload_id}/{name}?…&sig=…`: the body is the file.
pub async fn put_upload(
    State(state): State<AppState>,
    Path((upload_id, name)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ttl = check_upload(&state, "upload", &upload_id, &name, &query)?;
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    save(
        &state,
        &format!("uploads/{upload_id}/{name}"),
        &query.owner,
        &content_type(&headers),
        bytes,
        ttl,
    )
    .await?;
    Ok((StatusCode::OK, Json(json!({}))).into_response())
}

/// `PUT /storage/upload/multipart/{upload_id}/{name}/{part}?…`: one part; answers its etag.
pub async fn put_part(
    State(state): State<AppState>,
    Path((upload_id, name, part)): Path<(String, String, u32)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_upload(&state, "multipart", &upload_id, &name, &query)?;
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let etag = hex::encode(&Sha256::digest(&bytes)[..16]);
    state
        .files
        .put(&format!("parts/{upload_id}/{part:05}"), bytes)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Json(json!({ "partNumber": part, "etag": etag })).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert("etag", value);
    }
    Ok(response)
}

/// The body of a multipart `complete`.
#[derive(Debug, Deserialize)]
pub struct CompleteBody {
    parts: Vec<Part>,
}

/// One uploaded part.
#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "partNumber")]
    part_number: u32,
    etag: String,
}

/// `POST /storage/upload/multipart/{upload_id}/{name}/complete?…`: joins the parts.
pub async fn complete_multipart(
    State(state): State<AppState>,
    Path((upload_id, name)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ttl = check_upload(&state, "multipart", &upload_id, &name, &query)?;
    let bytes = read_body(&headers, body, 1024 * 1024).await?;
    let mut complete: CompleteBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("The body must be {{\"parts\": [...]}}: {e}")))?;
    complete.parts.sort_by_key(|p| p.part_number);
    let mut joined = Vec::new();
    for part in &complete.parts {
        let path = format!("parts/{upload_id}/{:05}", part.part_number);
        let data = state.files.get(&path).await.map_err(|_| {
            ApiError::BadRequest(format!("Part {} was not uploaded", part.part_number))
        })?;
        if hex::encode(&Sha256::digest(&data)[..16]) != part.etag.trim_matches('"') {
            return Err(ApiError::BadRequest(format!(
                "Part {} has another etag",
                part.part_number
            )));
        }
        joined.extend_from_slice(&data);
    }
    for part in &complete.parts {
        let _ = state
            .files
            .delete(&format!("parts/{upload_id}/{:05}", part.part_number))
            .await;
    }
    let path = format!("uploads/{upload_id}/{name}");
    let ct = headers
        .get("x-fal-content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    save(&state, &path, &query.owner, ct, Bytes::from(joined), ttl).await?;
    let url = state
        .files
        .url(&state.base_url(&headers), &path, now_ms() / 1000 + ttl);
    Ok(Json(json!({ "file_url": url })).into_response())
}

/// `POST /storage/auth/token?storage_type=fal-cdn-v3`: a bearer token for `/files/upload`.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authenticate(&state, &headers).await?;
    let expires_at = now_ms() / 1000 + UPLOAD_URL_SECONDS;
    let stamp = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires_at as u64),
    );
    Ok(Json(json!({
        "token": auth::cdn_token(&state, &caller.owner, expires_at),
        "token_type": "Bearer",
        "base_url": state.base_url(&headers),
        "expires_at": stamp.to_string().replace('Z', "+00:00"),
    })))
}

/// `POST /files/upload`: the Python client's CDN upload; the body is the file.
pub async fn cdn_upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Caller { owner } = auth::authenticate_upload(&state, &headers).await?;
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let name = safe_file_name(
        headers
            .get("x-fal-file-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("upload.bin"),
    );
    let path = format!("uploads/{}/{name}", uuid::Uuid::new_v4().simple());
    let ttl = file_ttl(&state, &headers);
    let ct = content_type(&headers);
    save(&state, &path, &owner, &ct, bytes, ttl).await?;
    let url = state
        .files
        .url(&state.base_url(&headers), &path, now_ms() / 1000 + ttl);
    Ok(Json(json!({ "access_url": url, "content_type": ct })))
}
