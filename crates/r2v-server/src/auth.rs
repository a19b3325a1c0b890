//! API keys: `Authorization: Key <id>:<secret>`. Secrets are stored as SHA-256 and
//! compared in constant time; revoked keys get 401. With auth off every caller is
//! `anonymous`. Also the short-lived bearer tokens of the Python client's CDN uploads.
//!
//! The extractors [`Caller`] and [`UploadCaller`] are the only way to get a caller: a
//! handler that needs to know who calls takes one as its first argument, so it is
//! authenticated before anything else (its body included) is looked at.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use r2v_store::{ApiKeyRecord, RequestStore, StoreError, now_ms};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who is calling: the id of their API key, checked from `Authorization: Key …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    owner: String,
}

impl Caller {
    /// The key id (`anonymous` with auth off).
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, &parts.headers).await
    }
}

/// A caller of the CDN upload routes: `Authorization: Bearer <token>` from
/// `/storage/auth/token`, or a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCaller(pub Caller);

impl FromRequestParts<AppState> for UploadCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate_upload(state, &parts.headers).await.map(Self)
    }
}

/// A newly created key: the id and the whole `id:secret`, shown once.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The public id.
    pub id: String,
    /// `id:secret`, for `Authorization: Key …`.
    pub key: String,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Creates and stores a key.
pub async fn create_key(store: &dyn RequestStore, name: &str) -> Result<NewKey, StoreError> {
    let id = format!("k{}", random_hex(8));
    let secret = random_hex(24);
    store
        .insert_key(ApiKeyRecord {
            id: id.clone(),
            secret_sha256: sha256_hex(&secret),
            name: name.to_owned(),
            created_at: now_ms(),
            revoked_at: None,
        })
        .await?;
    Ok(NewKey {
        key: format!("{id}:{secret}"),
        id,
    })
}

/// Checks the `Authorization` header.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if !state.config.auth {
        return Ok(Caller {
            owner: "anonymous".to_owned(),
        });
    }
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "Missing Authorization header; expected `Key <id>:<secret>`".into(),
            )
        })?;
    let Some(credentials) = value
        .strip_prefix("Key ")
        .or_else(|| value.strip_prefix("key "))
    else {
        return Err(ApiError::Unauthorized(
            "Unsupported Authorization scheme; expected `Key <id>:<secret>`".into(),
        ));
    };
    let (id, secret) = credentials
        .trim()
        .split_once(':')
        .ok_or_else(|| ApiError::Unauthorized("Malformed key; expected `<id>:<secret>`".into()))?;
    let invalid = || ApiError::Unauthorized("Invalid or revoked API key".into());
    let record = state.store.get_key(id).await?.ok_or_else(invalid)?;
    let matches: bool = sha256_hex(secret)
        .as_bytes()
        .ct_eq(record.secret_sha256.as_bytes())
        .into();
    if !matches || record.revoked_at.is_some() {
        return Err(invalid());
    }
    Ok(Caller { owner: record.id })
}

/// A CDN upload token for `owner`, valid until `expires_at` (Unix seconds).
pub fn cdn_token(state: &AppState, owner: &str, expires_at: i64) -> String {
    let exp = expires_at.to_string();
    format!("{owner}.{exp}.{}", state.files.sign("cdn", &[owner, &exp]))
}

/// The caller behind `Authorization: Bearer <cdn token>` (or a regular key).
async fn authenticate_upload(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        return authenticate(state, headers).await;
    };
    let mut parts = token.trim().splitn(3, '.');
    let (Some(owner), Some(exp), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::Unauthorized("Malformed upload token".into()));
    };
    let fresh = exp.parse::<i64>().is_ok_and(|e| e * 1000 >= now_ms());
    if !fresh || !state.files.verify("cdn", &[owner, exp], sig) {
        return Err(ApiError::Unauthorized(
            "Invalid or expired upload token".into(),
        ));
    }
    if state.config.auth
        && state
            .store
            .get_key(owner)
            .await?
            .is_none_or(|k| k.revoked_at.is_some())
    {
        return Err(ApiError::Unauthorized("Invalid or revoked API key".into()));
    }
    Ok(Caller {
        owner: owner.to_owned(),
    })
}
