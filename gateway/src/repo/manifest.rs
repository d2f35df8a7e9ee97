//! A model repository's manifest (`manifest.json`: the version and each file's path, sha256 and
//! size) and where a repository is (`s3://`, `file://`, a directory): pure, no I/O but the walk
//! of a local directory. [`super::remote`] reads and writes them in object storage.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's object name under the prefix.
pub const MANIFEST: &str = "manifest.json";
/// Largest manifest read.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Most files a repository may hold.
const MAX_FILES: usize = 10_000;
/// Largest file.
pub(crate) const MAX_FILE_BYTES: u64 = 16 << 30;

/// One file of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path under the repository (`mlp/model.onnx`).
    pub path: String,
    /// Its content's sha256 (hex).
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// A repository's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The repository's version: a digest of every path and content.
    pub version: String,
    /// Every file, by path.
    pub files: Vec<Entry>,
}

/// Where a repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory.
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix (no leading or trailing `/`; may be empty).
        prefix: String,
    },
}

impl Location {
    /// Parses `--model-repo`.
    pub fn parse(repo: &str) -> Result<Self, String> {
        if let Some(rest) = repo.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let ok = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !ok {
                return Err(format!(
                    "{repo}: not a bucket name (3 to 63 of a-z 0-9 . -)"
                ));
            }
            let prefix = prefix.trim_matches('/').to_string();
            if prefix.len() > 512 || prefix.split('/').any(|p| p == ".." || p == ".") {
                return Err(format!(
                    "{repo}: a prefix of at most 512 characters, no . or .. parts"
                ));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if let Some(path) = repo.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if repo.contains("://") {
            return Err(format!("{repo}: s3://, file:// or a directory"));
        }
        Ok(Location::Local(PathBuf::from(repo)))
    }

    /// The key of `name` under `prefix`.
    pub fn key(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        }
    }
}

/// A path of a manifest: relative, plain parts only.
fn check_path(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && p.len() <= 1024
        && p.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("path {p:?}: not a plain relative path"))
    }
}

/// Lowercase hex of `d`.
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Checks what a fetched manifest may ask for, before anything is allocated for it.
    pub fn check(&self) -> Result<(), String> {
        if self.files.is_empty() || self.files.len() > MAX_FILES {
            return Err(format!("{} files: 1 to {MAX_FILES}", self.files.len()));
        }
        let hex64 = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
        for e in &self.files {
            check_path(&e.path)?;
            if !hex64(&e.sha256) {
                return Err(format!(
                    "{}: sha256 {:?} is not 64 hex digits",
                    e.path, e.sha256
                ));
            }
            if e.bytes > MAX_FILE_BYTES {
                return Err(format!(
                    "{}: {} bytes, over {MAX_FILE_BYTES}",
                    e.path, e.bytes
                ));
            }
        }
        // the version is the files' digest, recomputed: a manifest cannot name another
        // version's cache directory (or `current`)
        let want = version_of(&self.files);
        if self.version != want {
            return Err(format!(
                "version {:?} is not its files' digest {want}",
                self.version
            ));
        }
        Ok(())
    }

    /// The manifest of directory `dir` (symlinks followed; hidden files left out).
    pub fn of_dir(dir: &Path) -> Result<Manifest, String> {
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        files.sort_by(|a: &Entry, b| a.path.cmp(&b.path));
        if files.is_empty() {
            return Err(format!("{}: no files", dir.display()));
        }
        let version = version_of(&files);
        let m = Manifest { version, files };
        m.check()?;
        Ok(m)
    }
}

/// A repository's version: the digest of its paths, contents and sizes (16 hex digits).
pub(crate) fn version_of(files: &[Entry]) -> String {
    let mut h = Sha256::new();
    for e in files {
        h.update(format!("{} {} {}\n", e.path, e.sha256, e.bytes));
    }
    hex(&h.finalize())[..16].to_string()
}

/// Deepest directory nesting walked (a symlinked directory loop ends here, with an error).
const MAX_DEPTH: usize = 16;

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<(), String> {
    if dir.strip_prefix(root).map_or(0, |r| r.components().count()) > MAX_DEPTH {
        return Err(format!(
            "{}: more than {MAX_DEPTH} directories deep (a symlink loop?)",
            dir.display()
        ));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .replace('\\', "/");
            check_path(&rel)?;
            let mut f =
                std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut h = Sha256::new();
            let bytes =
                std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
            out.push(Entry {
                path: rel,
                sha256: hex(&h.finalize()),
                bytes,
            });
            if out.len() > MAX_FILES {
                return Err(format!("{}: more than {MAX_FILES} files", root.display()));
            }
        }
    }
    Ok(())
}
