//! Signed webhooks (PROTOCOL §4): Ed25519 over
//! `"{request_id}\n{user_id}\n{timestamp}\n{hex(sha256(body))}"`, published as a JWKS.
//!
//! Delivery state lives on the request row, so the dispatcher resumes after a restart:
//! it drains due deliveries, retries with bounded exponential backoff, and goes through
//! the same SSRF guard as reference downloads.

use crate::state::AppState;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use r2v_store::{RequestRow, now_ms};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The webhook signing key.
#[derive(Clone)]
pub struct WebhookSigner {
    key: SigningKey,
    kid: String,
}

impl WebhookSigner {
    /// The key of a 32-byte Ed25519 seed.
    pub fn from_seed(bytes: &[u8]) -> std::io::Result<Self> {
        let seed: [u8; 32] = bytes.try_into().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "webhook key must be 32 bytes",
            )
        })?;
        let key = SigningKey::from_bytes(&seed);
        let kid = hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..8]);
        Ok(Self { key, kid })
    }

    /// `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": …}]}`.
    pub fn jwks(&self) -> Value {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.key.verifying_key().as_bytes());
        json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "use": "sig", "alg": "EdDSA" }] })
    }

    /// The hex signature of a delivery.
    pub fn sign(&self, request_id: &str, user_id: &str, timestamp: i64, body: &[u8]) -> String {
        let message = format!(
            "{request_id}\n{user_id}\n{timestamp}\n{}",
            hex::encode(Sha256::digest(body))
        );
        hex::encode(self.key.sign(message.as_bytes()).to_bytes())
    }
}

/// The JSON a finished request's webhook carries.
pub fn payload(row: &RequestRow) -> Value {
    match (&row.result, row.error_status) {
        (Some(result), _) => json!({
            "request_id": row.id, "gateway_request_id": row.id, "status": "OK", "payload": result,
        }),
        (None, status) => json!({
            "request_id": row.id, "gateway_request_id": row.id, "status": "ERROR",
            "error": format!("Invalid status code: {}", status.unwrap_or(500)),
            "payload": row.error_body.clone().unwrap_or(Value::Null),
        }),
    }
}

/// Delay before attempt `n + 1` after `n` failures: 1 s doubling, at most 5 minutes.
fn backoff_ms(failures: i64) -> i64 {
    1000_i64
        .saturating_mul(1 << failures.clamp(0, 20) as u32 >> 1)
        .min(300_000)
}

/// Delivers one webhook; `Err` says why it failed.
async fn deliver(state: &AppState, row: &RequestRow) -> Result<(), String> {
    let url = row.webhook_url.as_deref().ok_or("no webhook URL")?;
    let body = serde_json::to_vec(&payload(row)).map_err(|e| e.to_string())?;
    let timestamp = now_ms() / 1000;
    let signature = state.webhooks.sign(&row.id, &row.owner, timestamp, &body);
    let headers = [
        ("x-fal-webhook-request-id", row.id.clone()),
        ("x-fal-webhook-user-id", row.owner.clone()),
        ("x-fal-webhook-timestamp", timestamp.to_string()),
        ("x-fal-webhook-signature", signature),
        (
            "user-agent",
            concat!("r2v-webhook/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
    ];
    match state.fetcher.post_json(url, &headers, body).await {
        Ok(status) if (200..300).contains(&status) => Ok(()),
        Ok(status) => Err(format!("the receiver answered {status}")),
        Err(e) => Err(e.to_string()),
    }
}

/// How long a claimed delivery is this dispatcher's: longer than a delivery can take (the
/// fetcher's 30 s timeout), after which another dispatcher may retry it.
const DELIVERY_LEASE_MS: i64 = 60_000;

/// Drains due deliveries until `shutdown` flips. Every node runs one; each delivery is
/// claimed in the store first, so exactly one dispatcher sends it.
pub async fn run_dispatcher(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let due = match state
            .store
            .claim_webhooks(now_ms(), 16, DELIVERY_LEASE_MS)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not read due webhooks");
                Vec::new()
            }
        };
        let state_ref = &state;
        let batch = futures_util::future::join_all(due.iter().map(|row| async move {
            let result = deliver(state_ref, row).await;
            (row, result)
        }))
        .await;
        for (row, result) in &batch {
            let attempts = row.webhook_attempts + 1;
            let outcome = match result {
                Ok(()) => {
                    metrics::counter!("r2v_webhook_deliveries_total", "result" => "ok")
                        .increment(1);
                    state
                        .store
                        .webhook_attempted(&row.id, true, None, None)
                        .await
                }
                Err(reason) => {
                    metrics::counter!("r2v_webhook_deliveries_total", "result" => "failed")
                        .increment(1);
                    let next = (attempts < state.config.webhook_max_attempts)
                        .then(|| now_ms() + backoff_ms(attempts));
                    tracing::warn!(request_id = %row.id, attempts, %reason, retry = next.is_some(), "webhook delivery failed");
                    state
                        .store
                        .webhook_attempted(&row.id, false, Some(reason), next)
                        .await
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "could not record a webhook attempt");
            }
        }
        if batch.is_empty() {
            tokio::select! {
                () = state.completed.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn signature_verifies_against_the_jwks_key_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let seed = crate::secrets::load_or_create(dir.path(), "webhook_ed25519", 32).unwrap();
        let signer = WebhookSigner::from_seed(&seed).unwrap();
        let body = br#"{"status":"OK"}"#;
        let sig = signer.sign("rid", "uid", 1700000000, body);
        let jwks = signer.jwks();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        let message = format!(
            "rid\nuid\n1700000000\n{}",
            hex::encode(Sha256::digest(body))
        );
        let signature = Signature::from_slice(&hex::decode(&sig).unwrap()).unwrap();
        assert!(key.verify(message.as_bytes(), &signature).is_ok());
        assert!(key.verify(b"tampered", &signature).is_err());
        let reloaded = crate::secrets::load_or_create(dir.path(), "webhook_ed25519", 32).unwrap();
        assert_eq!(WebhookSigner::from_seed(&reloaded).unwrap().jwks(), jwks);
        assert_eq!(
            (backoff_ms(1), backoff_ms(2), backoff_ms(30)),
            (1000, 2000, 300_000)
        );
    }
}
