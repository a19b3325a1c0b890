//! [`FileStore`]: uploads and outputs in an `object_store` (the local filesystem here;
//! S3 later), served through signed, expiring URLs.
//!
//! Signatures are HMAC-SHA256 over a purpose tag and the signed fields, so a file-read
//! signature can never stand in for an upload or a CDN token. The signing key is kept
//! in the data directory.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use sha2::Sha256;
use std::sync::Arc;

/// Blob storage plus URL signing.
#[derive(Clone)]
pub struct FileStore {
    objects: Arc<dyn ObjectStore>,
    key: Arc<Vec<u8>>,
}

impl FileStore {
    /// Files under `root`, URLs signed with `key`.
    pub fn open(root: &std::path::Path, key: Vec<u8>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let objects = LocalFileSystem::new_with_prefix(root).map_err(std::io::Error::other)?;
        Ok(Self {
            objects: Arc::new(objects),
            key: Arc::new(key),
        })
    }

    /// Stores `bytes` at `path`.
    pub async fn put(&self, path: &str, bytes: Bytes) -> Result<(), object_store::Error> {
        self.objects
            .put(&ObjectPath::from(path), bytes.into())
            .await
            .map(drop)
    }

    /// The bytes at `path`.
    pub async fn get(&self, path: &str) -> Result<Bytes, object_store::Error> {
        self.objects
            .get(&ObjectPath::from(path))
            .await?
            .bytes()
            .await
    }

    /// Deletes `path`; a missing file is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), object_store::Error> {
        match self.objects.delete(&ObjectPath::from(path)).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// Hex HMAC over `purpose` and `fields`.
    pub fn sign(&self, purpose: &str, fields: &[&str]) -> String {
        hex::encode(self.mac(purpose, fields).finalize().into_bytes())
    }

    /// Checks a signature from [`FileStore::sign`] in constant time.
    pub fn verify(&self, purpose: &str, fields: &[&str], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(sig) => self.mac(purpose, fields).verify_slice(&sig).is_ok(),
            Err(_) => false,
        }
    }

    fn mac(&self, purpose: &str, fields: &[&str]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        for field in fields {
            mac.update(b"\n");
            mac.update(field.as_bytes());
        }
        mac
    }

    /// `{base}/files/{path}?exp=…&sig=…`, readable until `expires_at` (Unix seconds).
    pub fn url(&self, base: &str, path: &str, expires_at: i64) -> String {
        let exp = expires_at.to_string();
        format!(
            "{base}/files/{path}?exp={exp}&sig={}",
            self.sign("file", &[path, &exp])
        )
    }

    /// Whether a file URL's query is a valid, unexpired signature for `path`.
    pub fn check_file_signature(&self, path: &str, exp: &str, sig: &str, now_s: i64) -> bool {
        exp.parse::<i64>().is_ok_and(|e| e >= now_s) && self.verify("file", &[path, exp], sig)
    }

    /// The stored path behind one of our own signed file URLs (any host), or `None`.
    pub fn own_path(&self, url: &str, now_s: i64) -> Option<String> {
        let parsed = url::Url::parse(url).ok()?;
        let path = parsed.path().strip_prefix("/files/")?.to_owned();
        let mut exp = None;
        let mut sig = None;
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "exp" => exp = Some(v.into_owned()),
                "sig" => sig = Some(v.into_owned()),
                _ => {}
            }
        }
        self.check_file_signature(&path, &exp?, &sig?, now_s)
            .then_some(path)
    }
}

/// A file name safe in a path and a URL: letters, digits, `.`, `_` and `-`, at most 100 chars.
pub fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "upload.bin".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_bound_to_purpose_path_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileStore::open(dir.path(), vec![7; 32]).unwrap();
        let url = files.url("http://h:1", "outputs/r/output.mp4", 2_000_000_000);
        assert_eq!(
            files.own_path(&url, 1_000).as_deref(),
            Some("outputs/r/output.mp4")
        );
        assert_eq!(
            files.own_path(&url.replace("outputs/r/", "outputs/x/"), 1_000),
            None
        );
        assert_eq!(files.own_path(&url, 2_000_000_001), None, "expired");
        let sig = files.sign("file", &["a", "1"]);
        assert!(!files.verify("upload", &["a", "1"], &sig));
        assert_eq!(safe_file_name("../../etc/pass wd"), "pass_wd");
        assert_eq!(safe_file_name(".."), "upload.bin");
    }
}
