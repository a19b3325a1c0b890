//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the contract
//! types of `r2v-api`.

use serde_json::Value;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(info(
    title = "r2v",
    description = "Self-hosted reference-to-video, speaking the fal queue protocol."
))]
struct ApiDoc;

/// The document as JSON.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}
