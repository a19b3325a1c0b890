//! The browser playground at `/playground` (and `/`, which points there): one page, its
//! stylesheet and its module script, compiled into the binary, so it works offline. The page
//! builds its form from `/openapi.json` and calls only this server's API, with the key the user
//! saves in the browser: it adds no way around authentication.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

const PAGE: &str = include_str!("../playground/index.html");
const SCRIPT: &str = include_str!("../playground/app.js");
const STYLE: &str = include_str!("../playground/app.css");

/// Scripts and styles from this origin only; the API on this origin; media (result videos,
/// reference previews) from wherever the server's file URLs point, and from `blob:`.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; media-src * blob:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the playground.
pub async fn root() -> Redirect {
    Redirect::temporary("/playground")
}

/// `GET /playground`: the page.
pub async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// `GET /playground/app.js`: the page's module script.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /playground/app.css`: the page's stylesheet.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
