//! Storage uploads in both official clients' flows (PROTOCOL §5):
//! - JS: `POST /storage/upload/initiate` then `PUT upload_url` (no auth header; the URL
//!   is signed), and `initiate-multipart` with part `PUT`s and a `complete` for files over 90 MB;
//! - Python: `POST /storage/auth/token` then `POST /files/upload` with the bearer token;
//!   over 100 MB, `POST /files/upload/multipart` then part `PUT`s and a `complete` under
//!   the returned `access_url`; and the `storage_type=gcs` fallback (initiate + `PUT`).
//!
//! Every stored file gets a record with its owner and expiry, and a signed URL.

use crate::auth::{self, Caller, UploadCaller};
use crate::error::ApiError;
use crate::files::{Joiner, safe_file_name};
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
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    kind: &str,
) -> Result<Value, ApiError> {
    let body = parse_initiate(&read_body(headers, body, 64 * 1024).await?)?;
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let name = safe_file_name(body.file_name.as_deref().unwrap_or("upload.bin"));
    let ttl = file_ttl(state, headers).to_string();
    let exp = (now_ms() / 1000 + UPLOAD_URL_SECONDS).to_string();
    let sig = upload_signature(state, kind, &upload_id, &name, caller.owner(), &exp, &ttl);
    let base = state.base_url(headers);
    let route = if kind == "upload" { "put" } else { "multipart" };
    let upload_url = format!(
        "{base}/storage/upload/{route}/{upload_id}/{name}?owner={}&exp={exp}&ttl={ttl}&sig={sig}",
        caller.owner()
    );
    let path = format!("uploads/{upload_id}/{name}");
    let file_expiry = now_ms() / 1000 + ttl.parse::<i64>().unwrap_or(0);
    Ok(json!({ "upload_url": upload_url, "file_url": state.files.url(&base, &path, file_expiry) }))
}

/// `POST /storage/upload/initiate?storage_type=fal-cdn-v3|gcs`.
pub async fn initiate(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    initiate_common(&state, &caller, &headers, body, "upload")
        .await
        .map(Json)
}

/// `POST /storage/upload/initiate-multipart?storage_type=fal-cdn-v3`.
pub async fn initiate_multipart(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    initiate_common(&state, &caller, &headers, body, "multipart")
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

/// Stores an upload's bytes at `path` and records it.
async fn save(
    state: &AppState,
    path: &str,
    owner: &str,
    content_type: &str,
    bytes: Bytes,
    ttl: i64,
) -> Result<(), ApiError> {
    let size = bytes.len() as u64;
    state
        .files
        .put(path, bytes)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    record(state, path, owner, content_type, size, ttl).await
}

/// Records a stored upload: its owner, type and size, and when the reaper deletes it.
async fn record(
    state: &AppState,
    path: &str,
    owner: &str,
    content_type: &str,
    size: u64,
    ttl: i64,
) -> Result<(), ApiError> {
    state
        .store
        .insert_file(FileRecord {
            path: path.to_owned(),
            owner: owner.to_owned(),
            request_id: None,
            content_type: content_type.to_owned(),
            size: size as i64,
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

/// Part numbers a multipart upload may use (as S3).
const MAX_PARTS: u32 = 10_000;

/// Where part `part` of upload `upload_id` waits for its `complete`.
fn part_path(upload_id: &str, part: u32) -> String {
    format!("parts/{upload_id}/{part:05}")
}

/// The etag of a part's bytes.
fn part_etag(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// Stores one part of a multipart upload; answers its etag (header and body).
async fn store_part(
    state: &AppState,
    upload_id: &str,
    part: u32,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !(1..=MAX_PARTS).contains(&part) {
        return Err(ApiError::BadRequest(format!(
            "Part numbers run from 1 to {MAX_PARTS}, not {part}"
        )));
    }
    let bytes = read_body(headers, body, state.config.max_body_bytes).await?;
    let etag = part_etag(&bytes);
    state
        .files
        .put(&part_path(upload_id, part), bytes)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Json(json!({ "partNumber": part, "etag": etag })).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert("etag", value);
    }
    Ok(response)
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
    store_part(&state, &upload_id, part, &headers, body).await
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

/// Where a finished multipart upload goes.
struct Joined<'a> {
    upload_id: &'a str,
    path: &'a str,
    owner: &'a str,
    content_type: &'a str,
    ttl: i64,
}

/// Joins the parts a `complete` body lists (each checked against its etag, the whole at
/// most `--max-body-bytes`) into the stored file, and records it.
async fn join_parts(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    joined: Joined<'_>,
) -> Result<(), ApiError> {
    let bytes = read_body(headers, body, 1024 * 1024).await?;
    let mut complete: CompleteBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("The body must be {{\"parts\": [...]}}: {e}")))?;
    complete.parts.sort_by_key(|p| p.part_number);
    complete.parts.dedup_by_key(|p| p.part_number);
    if complete.parts.is_empty() {
        return Err(ApiError::BadRequest("No parts were listed".into()));
    }
    let internal = |e: object_store::Error| ApiError::Internal(e.to_string());
    // Each part is read once: checked, then appended.
    let mut file = state.files.joiner(joined.path).await.map_err(internal)?;
    let mut size = 0u64;
    for part in &complete.parts {
        let checked = append_part(state, &mut file, joined.upload_id, part, &mut size).await;
        if let Err(error) = checked {
            let _ = file.abort().await;
            return Err(error);
        }
    }
    file.finish().await.map_err(internal)?;
    for part in &complete.parts {
        let _ = state
            .files
            .delete(&part_path(joined.upload_id, part.part_number))
            .await;
    }
    record(
        state,
        joined.path,
        joined.owner,
        joined.content_type,
        size,
        joined.ttl,
    )
    .await
}

/// Appends one listed part to `file` if it was uploaded with that etag and the file stays
/// within `--max-body-bytes`; `size` counts the bytes so far.
async fn append_part(
    state: &AppState,
    file: &mut Joiner,
    upload_id: &str,
    part: &Part,
    size: &mut u64,
) -> Result<(), ApiError> {
    let data = state
        .files
        .get(&part_path(upload_id, part.part_number))
        .await
        .map_err(|_| ApiError::BadRequest(format!("Part {} was not uploaded", part.part_number)))?;
    if part_etag(&data) != part.etag.trim_matches('"') {
        return Err(ApiError::BadRequest(format!(
            "Part {} has another etag",
            part.part_number
        )));
    }
    *size += data.len() as u64;
    if *size > state.config.max_body_bytes {
        return Err(ApiError::Request(r2v_api::RequestError::TooLarge {
            limit: state.config.max_body_bytes,
        }));
    }
    file.push(data)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
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
    let path = format!("uploads/{upload_id}/{name}");
    let content_type = headers
        .get("x-fal-content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let joined = Joined {
        upload_id: &upload_id,
        path: &path,
        owner: &query.owner,
        content_type: &content_type,
        ttl,
    };
    join_parts(&state, &headers, body, joined).await?;
    let url = state
        .files
        .url(&state.base_url(&headers), &path, now_ms() / 1000 + ttl);
    Ok(Json(json!({ "file_url": url })).into_response())
}

/// `POST /storage/auth/token?storage_type=fal-cdn-v3`: a bearer token for `/files/upload`.
pub async fn token(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let expires_at = now_ms() / 1000 + UPLOAD_URL_SECONDS;
    let stamp = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires_at as u64),
    );
    Ok(Json(json!({
        "token": auth::cdn_token(&state, caller.owner(), expires_at),
        "token_type": "Bearer",
        "base_url": state.base_url(&headers),
        "expires_at": stamp.to_string().replace('Z', "+00:00"),
    })))
}

/// `POST /files/upload`: the Python client's CDN upload; the body is the file.
pub async fn cdn_upload(
    UploadCaller(caller): UploadCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let owner = caller.owner();
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
    save(&state, &path, owner, &ct, bytes, ttl).await?;
    let url = state
        .files
        .url(&state.base_url(&headers), &path, now_ms() / 1000 + ttl);
    Ok(Json(json!({ "access_url": url, "content_type": ct })))
}

/// The id of the Python client's multipart upload of `path` by `owner`: bound to both, so
/// only the key that started an upload can add to it.
fn cdn_upload_id(state: &AppState, path: &str, owner: &str) -> String {
    state.files.sign("cdn-multipart", &[path, owner])[..32].to_owned()
}

/// `POST /files/upload/multipart`: the Python client's multipart upload of a file over
/// 100 MB starts here. Answers `access_url` (the file's signed URL, readable once the
/// upload completes) and `uploadId`; parts go to `{access_url}/multipart/{uploadId}/{n}`.
pub async fn cdn_multipart_initiate(
    UploadCaller(caller): UploadCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let name = safe_file_name(
        headers
            .get("x-fal-file-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("upload.bin"),
    );
    let path = format!("uploads/{}/{name}", uuid::Uuid::new_v4().simple());
    let upload_id = cdn_upload_id(&state, &path, caller.owner());
    // The content type is known now and needed at `complete`.
    state
        .files
        .put(
            &format!("parts/{upload_id}/content-type"),
            Bytes::from(content_type(&headers)),
        )
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires_at = now_ms() / 1000 + file_ttl(&state, &headers);
    let access_url = state
        .files
        .url(&state.base_url(&headers), &path, expires_at);
    Ok(Json(
        json!({ "access_url": access_url, "uploadId": upload_id }),
    ))
}

/// What a Python multipart call names.
struct CdnTarget {
    /// The stored file's path.
    path: String,
    /// The upload's id.
    upload_id: String,
    /// `complete`, or a part number.
    step: String,
    /// Seconds the file's URL has left.
    ttl: i64,
}

/// A Python multipart call's target, from the `/files/` route path
/// `{exp}.{sig}/{path}/multipart/{uploadId}/{step}`, when the URL is valid and the upload
/// is the caller's.
fn cdn_multipart_target(
    state: &AppState,
    caller: &Caller,
    route_path: &str,
) -> Result<CdnTarget, ApiError> {
    let missing = || ApiError::NotFound("Upload not found or expired".into());
    let mut pieces = route_path.rsplitn(4, '/');
    let (Some(step), Some(upload_id), Some("multipart"), Some(file)) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(missing());
    };
    let now = now_ms() / 1000;
    let path = state
        .files
        .signed_path(file, None, now)
        .ok_or_else(missing)?;
    if cdn_upload_id(state, &path, caller.owner()) != upload_id {
        return Err(missing());
    }
    let exp: i64 = file
        .split_once('.')
        .and_then(|(exp, _)| exp.parse().ok())
        .ok_or_else(missing)?;
    Ok(CdnTarget {
        path,
        upload_id: upload_id.to_owned(),
        step: step.to_owned(),
        ttl: exp - now,
    })
}

/// `PUT {access_url}/multipart/{uploadId}/{n}`: one part of a Python multipart upload.
pub async fn cdn_multipart_part(
    UploadCaller(caller): UploadCaller,
    State(state): State<AppState>,
    Path(route_path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = cdn_multipart_target(&state, &caller, &route_path)?;
    let step = &target.step;
    let part = step
        .parse::<u32>()
        .map_err(|_| ApiError::BadRequest(format!("'{step}' is not a part number")))?;
    store_part(&state, &target.upload_id, part, &headers, body).await
}

/// `POST {access_url}/multipart/{uploadId}/complete`: joins the parts into the file that
/// `access_url` serves.
pub async fn cdn_multipart_complete(
    UploadCaller(caller): UploadCaller,
    State(state): State<AppState>,
    Path(route_path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let CdnTarget {
        path,
        upload_id,
        step,
        ttl,
    } = cdn_multipart_target(&state, &caller, &route_path)?;
    if step != "complete" {
        return Err(ApiError::NotFound("Not found".into()));
    }
    let type_path = format!("parts/{upload_id}/content-type");
    let content_type = state
        .files
        .get(&type_path)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let joined = Joined {
        upload_id: &upload_id,
        path: &path,
        owner: caller.owner(),
        content_type: &content_type,
        ttl,
    };
    join_parts(&state, &headers, body, joined).await?;
    let _ = state.files.delete(&type_path).await;
    let url = state
        .files
        .url(&state.base_url(&headers), &path, now_ms() / 1000 + ttl);
    Ok(Json(json!({ "access_url": url })))
}
