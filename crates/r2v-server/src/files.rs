//! [`FileStore`]: uploads and outputs in an `object_store` (the local filesystem, or an
//! S3-compatible bucket that a fleet's nodes share), served through signed, expiring URLs
//! of the API (any node can answer them: the signing key is shared through the store).
//!
//! Signatures are HMAC-SHA256 over a purpose tag and the signed fields, so a file-read
//! signature can never stand in for an upload or a CDN token.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, WriteMultipart};
use sha2::Sha256;
use std::sync::Arc;

/// Blob storage plus URL signing.
#[derive(Clone)]
pub struct FileStore {
    objects: Arc<dyn ObjectStore>,
    key: Arc<Vec<u8>>,
}

impl FileStore {
    /// Files under `root` on the local disk, URLs signed with `key`.
    pub fn open(root: &std::path::Path, key: Vec<u8>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let objects = LocalFileSystem::new_with_prefix(root).map_err(std::io::Error::other)?;
        Ok(Self::new(Arc::new(objects), key))
    }

    /// Files in the bucket of `url` (`s3://bucket[/prefix]`), under its prefix; the endpoint,
    /// region and credentials come from the usual AWS variables (`AWS_ENDPOINT`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`…).
    pub fn open_s3(url: &str, key: Vec<u8>) -> Result<Self, object_store::Error> {
        let parsed = url::Url::parse(url).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        let bucket = AmazonS3Builder::from_env().with_url(url).build()?;
        let prefix = parsed.path().trim_matches('/');
        let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(bucket)
        } else {
            Arc::new(PrefixStore::new(bucket, prefix))
        };
        Ok(Self::new(objects, key))
    }

    fn new(objects: Arc<dyn ObjectStore>, key: Vec<u8>) -> Self {
        Self {
            objects,
            key: Arc::new(key),
        }
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

    /// `{base}/files/{exp}.{sig}/{path}`, readable until `expires_at` (Unix seconds). The
    /// signature is a path segment, so a URL with a suffix (the Python client's multipart
    /// `{access_url}/multipart/{id}/{part}`) still carries it.
    pub fn url(&self, base: &str, path: &str, expires_at: i64) -> String {
        let exp = expires_at.to_string();
        format!(
            "{base}/files/{exp}.{}/{path}",
            self.sign("file", &[path, &exp])
        )
    }

    /// The stored path a `/files/` route path names, when its signature is valid and
    /// unexpired: `{exp}.{sig}/{path}`, or `{path}` with `?exp=…&sig=…` in `query` (the
    /// form of URLs made before 0.2, which stored results still hold).
    pub fn signed_path(
        &self,
        route_path: &str,
        query: Option<(&str, &str)>,
        now_s: i64,
    ) -> Option<String> {
        let valid = |path: &str, exp: &str, sig: &str| {
            exp.parse::<i64>().is_ok_and(|e| e >= now_s) && self.verify("file", &[path, exp], sig)
        };
        if let Some((token, path)) = route_path.split_once('/')
            && let Some((exp, sig)) = token.split_once('.')
            && valid(path, exp, sig)
        {
            return Some(path.to_owned());
        }
        let (exp, sig) = query?;
        valid(route_path, exp, sig).then(|| route_path.to_owned())
    }

    /// The stored path behind one of our own signed file URLs (any host), or `None`.
    pub fn own_path(&self, url: &str, now_s: i64) -> Option<String> {
        let parsed = url::Url::parse(url).ok()?;
        let route_path = parsed.path().strip_prefix("/files/")?;
        let mut exp = None;
        let mut sig = None;
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "exp" => exp = Some(v.into_owned()),
                "sig" => sig = Some(v.into_owned()),
                _ => {}
            }
        }
        let query = exp.as_deref().zip(sig.as_deref());
        self.signed_path(route_path, query, now_s)
    }

    /// A file written at `dest` piece by piece (a multipart upload's parts, in order),
    /// holding at most a couple of pieces in memory.
    pub async fn joiner(&self, dest: &str) -> Result<Joiner, object_store::Error> {
        let upload = self.objects.put_multipart(&ObjectPath::from(dest)).await?;
        Ok(Joiner(WriteMultipart::new(upload)))
    }
}

/// A file being written from pieces ([`FileStore::joiner`]): `finish` stores it, `abort`
/// drops what was written.
pub struct Joiner(WriteMultipart);

impl Joiner {
    /// Appends `bytes`, first waiting until earlier pieces are written.
    pub async fn push(&mut self, bytes: Bytes) -> Result<(), object_store::Error> {
        self.0.wait_for_capacity(2).await?;
        self.0.put(bytes);
        Ok(())
    }

    /// Stores the file.
    pub async fn finish(self) -> Result<(), object_store::Error> {
        self.0.finish().await.map(drop)
    }

    /// Gives the file up.
    pub async fn abort(self) -> Result<(), object_store::Error> {
        self.0.abort().await
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
            files.own_path(&format!("{url}/multipart/x/1"), 1_000),
            None,
            "a suffix names another path"
        );
        let legacy = format!(
            "http://h:1/files/outputs/r/output.mp4?exp=2000000000&sig={}",
            files.sign("file", &["outputs/r/output.mp4", "2000000000"])
        );
        assert_eq!(
            files.own_path(&legacy, 1_000).as_deref(),
            Some("outputs/r/output.mp4")
        );
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
