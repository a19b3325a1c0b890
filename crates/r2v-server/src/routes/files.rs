//! `GET /files/{path}?exp=…&sig=…`: stored files, readable by anyone holding a valid,
//! unexpired signed URL; anything else is a 404.

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
    let (Some(exp), Some(sig)) = (query.get("exp"), query.get("sig")) else {
        return Err(missing());
    };
    if !state
        .files
        .check_file_signature(&path, exp, sig, now_ms() / 1000)
    {
        return Err(missing());
    }
    let record = state.store.get_file(&path).await?.ok_or_else(missing)?;
    let bytes = state.files.get(&path).await.map_err(|_| missing())?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}
