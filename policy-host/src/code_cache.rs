//! The `.cwasm` cache of compiled policy code. Loading a cache file runs its bytes as native
//! code, so only files this gateway wrote are loaded: each carries an HMAC-SHA256 under a key
//! that lives in the cache directory, readable by this user only, and the directory itself must
//! belong to this user and not be writable by anyone else. A file that fails any check is
//! ignored and the component is compiled again (and the file rewritten).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const KEY_FILE: &str = ".mark-cache-key";
const TAG_LEN: usize = 32;

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`, from the `hmac` crate.
pub fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The uid this process runs as (the owner of `/proc/self`).
fn my_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// An authenticated cache in one directory.
pub struct CodeCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("CodeCache").field("dir", &self.dir).finish()
    }
}

impl CodeCache {
    /// Opens (creating with mode 0700) `dir` and its key. `Err` with the reason when the
    /// directory or key is not this user's alone: then nothing is cached.
    pub fn open(dir: &Path) -> Result<Self, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let me = my_uid().ok_or("cannot tell this process's uid")?;
        let meta = fs::metadata(dir).map_err(|e| e.to_string())?;
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} must belong to this user and not be writable by group or others (mode {:o})",
                dir.display(),
                meta.mode() & 0o777
            ));
        }
        let key_path = dir.join(KEY_FILE);
        if !key_path.exists() {
            let key: [u8; 32] = rand::random();
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .map_err(|e| format!("{}: {e}", key_path.display()))?;
            f.write_all(&key).map_err(|e| e.to_string())?;
        }
        let meta = fs::symlink_metadata(&key_path).map_err(|e| e.to_string())?;
        if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{} must be a file of this user's with mode 0600",
                key_path.display()
            ));
        }
        let key = fs::read(&key_path)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or_else(|| format!("{} is not a 32-byte key", key_path.display()))?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.cwasm"))
    }

    /// The compiled code stored under `id`, if a file exists and its tag proves this cache
    /// wrote it for `id`.
    pub fn get(&self, id: &str) -> Option<Vec<u8>> {
        let mut file = fs::read(self.path(id)).ok()?;
        if file.len() < TAG_LEN {
            return None;
        }
        let code = file.split_off(TAG_LEN);
        let want = hmac_sha256(&self.key, &[id.as_bytes(), &code]);
        // constant time is not needed (the tag is not secret once written), but cheap
        if crate::secret::constant_time_eq(&file, &want) {
            Some(code)
        } else {
            tracing::warn!(file = %self.path(id).display(), "ignoring a cached policy not written by this gateway");
            None
        }
    }

    /// Stores `code` under `id` (atomically: write then rename).
    pub fn put(&self, id: &str, code: &[u8]) {
        let tag = hmac_sha256(&self.key, &[id.as_bytes(), code]);
        let path = self.path(id);
        let tmp = path.with_extension("tmp");
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&tag)?;
                f.write_all(code)
            });
        if written.is_ok() {
            let _ = fs::rename(tmp, path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 case 2: key "Jefe" (HMAC pads keys with zeros to the block, so "Jefe" and
        // "Jefe" followed by 28 zero bytes are the same key)
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&k, &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let k = [7u8; 32];
        assert_eq!(hmac_sha256(&k, &[b"ab", b"c"]), hmac_sha256(&k, &[b"abc"]));
        assert_ne!(
            hmac_sha256(&k, &[b"abc"]),
            hmac_sha256(&[8u8; 32], &[b"abc"])
        );
    }

    #[test]
    fn only_files_this_cache_wrote_are_loaded() {
        let dir = std::env::temp_dir().join(format!("mark-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let c = CodeCache::open(&dir).unwrap();
        c.put("abc", b"native code");
        assert_eq!(c.get("abc").as_deref(), Some(&b"native code"[..]));
        // planted by someone else: right name, no valid tag
        let mut planted = vec![0u8; TAG_LEN];
        planted.extend_from_slice(b"evil code");
        fs::write(dir.join("def.cwasm"), planted).unwrap();
        assert_eq!(c.get("def"), None);
        // a valid file copied under another id
        fs::copy(dir.join("abc.cwasm"), dir.join("ghi.cwasm")).unwrap();
        assert_eq!(c.get("ghi"), None);
        // tampered
        let mut f = fs::read(dir.join("abc.cwasm")).unwrap();
        *f.last_mut().unwrap() ^= 1;
        fs::write(dir.join("abc.cwasm"), f).unwrap();
        assert_eq!(c.get("abc"), None);
        // a directory others may write to is refused
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(CodeCache::open(&dir).unwrap_err().contains("writable"));
        let _ = fs::remove_dir_all(&dir);
    }
}
