//! `/api/fal/proxy`: fal's server-proxy protocol, for the JS client's `proxyUrl` recipe.
//! The original URL arrives in `x-fal-target-url`; its host picks the surface
//! (`queue.fal.run` → queue, `fal.run` → `/run`, `rest.fal.ai` and `v3.fal.media` →
//! storage) and the request is re-dispatched into this server's own router.

use crate::error::ApiError;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Uri};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

/// Handles one proxied request.
pub async fn proxy(router: Router, mut request: Request<Body>) -> Response {
    match target(&request) {
        Ok(uri) => {
            *request.uri_mut() = uri;
            request.headers_mut().remove("x-fal-target-url");
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
        Err(e) => e.into_response(),
    }
}

fn target(request: &Request<Body>) -> Result<Uri, ApiError> {
    if !matches!(*request.method(), Method::GET | Method::POST | Method::PUT) {
        return Err(ApiError::MethodNotAllowed(
            "The proxy takes GET, POST and PUT".into(),
        ));
    }
    let target = request
        .headers()
        .get("x-fal-target-url")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("Missing the x-fal-target-url header".into()))?;
    let url = url::Url::parse(target)
        .map_err(|e| ApiError::BadRequest(format!("x-fal-target-url is not a URL: {e}")))?;
    let prefix = match url.host_str() {
        Some("queue.fal.run" | "rest.fal.ai" | "v3.fal.media") => "",
        Some("fal.run") => "/run",
        _ => {
            return Err(ApiError::BadRequest(format!(
                "x-fal-target-url must point at queue.fal.run, fal.run or rest.fal.ai, not {target}"
            )));
        }
    };
    let path_and_query = match url.query() {
        Some(q) => format!("{prefix}{}?{q}", url.path()),
        None => format!("{prefix}{}", url.path()),
    };
    path_and_query
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("bad target path: {e}")))
}
