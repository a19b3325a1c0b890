//! Keys the server keeps so that they survive restarts. The file-URL and webhook signing
//! keys live in the request store, so every node that shares a database signs alike
//! ([`shared`]); the node id is this node's own, in its data directory ([`load_or_create`]).

use r2v_store::RequestStore;
use rand::RngCore;
use std::io;
use std::path::Path;

/// Reads `dir/name` (hex), or creates it with `len` random bytes (mode 0600).
pub fn load_or_create(dir: &Path, name: &str, len: usize) -> io::Result<Vec<u8>> {
    let path = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        });
    }
    std::fs::create_dir_all(dir)?;
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, hex::encode(&bytes))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(bytes)
}

/// The key `name` that every node sharing `store` uses. A data directory from before keys
/// moved into the store offers its own (`dir/name`), so its URLs and webhooks stay valid;
/// else a new random key of `len` bytes is offered. The first key stored wins.
pub async fn shared(
    store: &dyn RequestStore,
    dir: &Path,
    name: &str,
    len: usize,
) -> io::Result<Vec<u8>> {
    let candidate = match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => hex::decode(text.trim())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))?,
        Err(_) => {
            let mut bytes = vec![0u8; len];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            bytes
        }
    };
    store
        .shared_secret(name, &candidate)
        .await
        .map_err(io::Error::other)
}
