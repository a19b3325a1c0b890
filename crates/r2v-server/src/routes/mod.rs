//! The HTTP surface, one file per resource. [`router`] assembles it; the proxy route
//! re-dispatches into the same router.

pub mod files;
pub mod meta;
pub mod playground;
pub mod proxy;
pub mod queue;
pub mod run;
pub mod storage;
pub mod stream;
pub mod usage;
pub mod worker;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::routing::{any, get, post, put};

/// Every route of the service. Every route that takes a body authenticates the caller
/// before reading it, and reads at most a limit that fits the route: `--max-body-bytes`
/// (512 MiB by default) for submits and uploads only.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        // Queue (PROTOCOL §2): submit to the endpoint, everything else under /requests.
        .route("/{owner}/{alias}", post(queue::submit_bare))
        .route("/{owner}/{alias}/{*path}", post(queue::submit))
        .route("/{owner}/{alias}/requests/{id}", get(queue::result))
        .route("/{owner}/{alias}/requests/{id}/status", get(queue::status))
        .route(
            "/{owner}/{alias}/requests/{id}/status/stream",
            get(stream::status_stream),
        )
        .route("/{owner}/{alias}/requests/{id}/cancel", put(queue::cancel))
        // Sync (PROTOCOL §3.1).
        .route("/run/{owner}/{alias}/{*path}", post(run::run))
        // Storage (PROTOCOL §5).
        .route("/storage/upload/initiate", post(storage::initiate))
        .route(
            "/storage/upload/initiate-multipart",
            post(storage::initiate_multipart),
        )
        .route(
            "/storage/upload/put/{upload_id}/{name}",
            put(storage::put_upload),
        )
        .route(
            "/storage/upload/multipart/{upload_id}/{name}/complete",
            post(storage::complete_multipart),
        )
        .route(
            "/storage/upload/multipart/{upload_id}/{name}/{part}",
            put(storage::put_part),
        )
        .route("/storage/auth/token", post(storage::token))
        .route("/files/upload", post(storage::cdn_upload))
        .route(
            "/files/upload/multipart",
            post(storage::cdn_multipart_initiate),
        )
        .route(
            "/files/{*path}",
            get(files::download)
                .put(storage::cdn_multipart_part)
                .post(storage::cdn_multipart_complete),
        )
        // Usage metering (SPEC §4).
        .route("/usage", get(usage::usage))
        // Workers on other machines, behind their token.
        .merge(worker::routes(state.clone()))
        // The browser playground.
        .route("/", get(playground::root))
        .route("/playground", get(playground::page))
        .route("/playground/app.js", get(playground::script))
        .route("/playground/app.css", get(playground::style))
        // Meta.
        .route("/health", get(meta::health))
        .route("/metrics", get(meta::metrics))
        .route("/.well-known/jwks.json", get(meta::jwks))
        .route("/openapi.json", get(meta::openapi))
        .route("/docs/errors", get(meta::error_docs))
        .fallback(meta::not_found)
        // Handlers that take a body read it with `read_body` after authenticating, each with
        // its own limit; this default only bounds extractors a future handler might use.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state);
    let inner = api.clone();
    api.route(
        "/api/fal/proxy",
        any(move |request| proxy::proxy(inner.clone(), request)),
    )
}

/// Reads a body of at most `limit` bytes; larger ones are a 413 with a JSON body, and
/// a declared length over the limit is refused before reading. A body that stalls past the
/// server's body idle timeout (or breaks off) is a 408.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::Request(r2v_api::RequestError::TooLarge { limit });
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|e| {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(error) = cause {
                if error.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                cause = error.source();
            }
            ApiError::Timeout(format!("The request body was not received: {e}"))
        })
}

/// Refuses a body whose declared content type is not JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("content-type").and_then(|v| v.to_str().ok()) {
        None => Ok(()),
        Some(ct)
            if ct
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")) =>
        {
            Ok(())
        }
        Some(ct) => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, not {ct}"
        ))),
    }
}
