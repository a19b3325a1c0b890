//! The OpenAPI 3.1 document served at `/openapi.json` (and printed by `r2v openapi`),
//! generated from the handlers' `#[utoipa::path]` annotations and the types they return
//! (`crate::wire`, `r2v-api`). The router serves the queue on generic
//! `{owner}/{alias}/{path}` routes; the document names the two endpoints this server hosts:
//! the standard endpoint takes the flash endpoint's operation.

use crate::routes::{meta, queue, run, stream, usage};
use r2v_api::Preset;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// `Authorization: Key <id>:<secret>` on every operation but the public ones.
struct KeyAuth;

impl Modify for KeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Key <id>:<secret>` (`r2v keys create`)",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "r2v",
        description = "Self-hosted reference-to-video that speaks the fal queue protocol. \
        Authenticate with `Authorization: Key <id>:<secret>`."
    ),
    paths(
        queue::submit,
        queue::status,
        stream::status_stream,
        queue::result,
        queue::cancel,
        run::run,
        usage::usage,
        meta::health
    ),
    components(schemas(queue::QueuePriority)),
    modifiers(&KeyAuth),
    security(("key" = []))
)]
struct ApiDoc;

/// The document as JSON.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    // One operation, two endpoints: the standard endpoint's submit is the flash one's.
    let flash = format!("/{}", Preset::Flash.endpoint_id());
    let standard = format!("/{}", Preset::Standard.endpoint_id());
    if let Some(mut operation) = doc["paths"][&flash].get("post").cloned() {
        operation["operationId"] = "submit_standard".into();
        operation["summary"] = "Submit to the standard preset (full-step sampling with CFG)".into();
        doc["paths"][&standard] = serde_json::json!({ "post": operation });
    }
    // The rule across two fields that a property schema cannot state.
    if let Some(input) = doc["components"]["schemas"].get_mut("InputSchema") {
        input["not"] = r2v_api::wire_forms::reference_total_rule()["not"].clone();
    }
    doc
}

#[cfg(test)]
mod tests {
    /// The committed `docs/openapi.json` is the generated document; `R2V_BLESS=1` rewrites it.
    #[test]
    fn committed_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = serde_json::to_string_pretty(&super::document()).unwrap() + "\n";
        if std::env::var_os("R2V_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is stale: run `R2V_BLESS=1 cargo test -p r2v-server openapi`"
        );
        assert!(generated.contains("\"openapi\": \"3.1"));
    }
}
