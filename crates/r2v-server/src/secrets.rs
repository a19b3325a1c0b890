//! Keys the server keeps in its data directory so that they survive restarts: the
//! webhook signing key, the file-URL signing key and the node id.

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
