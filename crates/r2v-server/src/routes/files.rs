//! `GET /files/{exp}.{sig}/{path}`: stored files, readable by anyone holding a valid,
//! unexpired signed URL; anything else is a 404.
//!
//! Files come from users (uploads) and share the API's origin, where the playground keeps
//! an API key: none may run as a page. Every file is served with `nosniff` and a
//! `Content-Security-Policy: sandbox`, and anything but a raster image, a video or audio is
//! an attachment (`Content-Disposition`), whatever type it was uploaded with.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use r2v_store::now_ms;
use std::collections::HashMap;

/// `GET /files/{path}`.
pub async fn download(
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::NotFound("File not found".into());
    let signature = query
        .get("exp")
        .map(String::as_str)
        .zip(query.get("sig").map(String::as_str));
    let path = state
        .files
        .signed_path(&path, signature, now_ms() / 1000)
        .ok_or_else(missing)?;
    let record = state.store.get_file(&path).await?.ok_or_else(missing)?;
    let bytes = state.files.get(&path).await.map_err(|_| missing())?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let inline = is_inline_media(&record.content_type);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; img-src 'self'; media-src 'self'"),
    );
    if !inline {
        let name = path.rsplit('/').next().unwrap_or("file");
        let disposition =
            HeaderValue::from_str(&format!("attachment; filename=\"{}\"", ascii_name(name)))
                .unwrap_or(HeaderValue::from_static("attachment"));
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// Raster images, video and audio are shown inline; everything else (HTML, SVG, scripts,
/// unknown types) is downloaded.
fn is_inline_media(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp" | "image/avif"
    ) || essence.starts_with("video/")
        || essence.starts_with("audio/")
}

/// A file name safe inside a quoted header parameter.
fn ascii_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
