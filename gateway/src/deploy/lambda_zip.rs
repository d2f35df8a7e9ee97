//! `mark package lambda`: the function's zip for the `provided.al2023` runtime — `bootstrap`
//! (a shell script), `mark`, `libonnxruntime.so`, and the models or the `s3://` URL they are
//! fetched from at cold start. Sizes are checked against Lambda's limits from the files' metadata
//! before anything is read; the archive is deterministic (fixed order and timestamps), so the
//! same inputs give the same bytes and `mark deploy` can tell an unchanged function by its hash.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::worker_boot::quote;

/// Lambda's limit on a function's unzipped code (and layers): "250 MB", 262,144,000 bytes.
pub const UNZIPPED_LIMIT: u64 = 250 * 1024 * 1024;
/// Lambda's limit on a zip uploaded in the CreateFunction / UpdateFunctionCode request itself
/// (larger ones go through S3, as `mark deploy` does).
pub const DIRECT_UPLOAD_LIMIT: u64 = 50 * 1024 * 1024;

/// Where the function's models come from.
#[derive(Debug, Clone)]
pub enum Models {
    /// Copied into the zip under `models/`.
    Bundled(PathBuf),
    /// Fetched and verified at cold start into `/tmp` (the only writable place on Lambda).
    Remote(String),
}

/// One file of the zip.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the zip.
    pub name: String,
    /// Where its bytes are, or the bytes.
    pub source: Source,
    /// Bytes (from metadata: checked before reading).
    pub bytes: u64,
    /// Unix mode.
    pub mode: u32,
}

/// Bytes of an entry.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// Generated text.
    Text(String),
}

/// The function's `bootstrap`.
pub fn bootstrap(models: &Models) -> String {
    let repo = match models {
        Models::Bundled(_) => "\"$LAMBDA_TASK_ROOT/models\"".to_string(),
        Models::Remote(url) => quote(url),
    };
    format!(
        "#!/bin/sh\n# MArk-rs spill-over function (written by `mark package lambda`): runtime provided.al2023\nset -e\nexport ORT_DYLIB_PATH=\"$LAMBDA_TASK_ROOT/libonnxruntime.so\"\n# an s3:// repository is fetched, verified and cached here at cold start (/tmp: Lambda's only writable place)\nexport MARK_REPO_CACHE=/tmp/mark-repo\nexec \"$LAMBDA_TASK_ROOT/mark\" lambda --model-repo {repo} --ort-lib \"$LAMBDA_TASK_ROOT/libonnxruntime.so\"\n"
    )
}

fn file(name: &str, path: &Path, mode: u32) -> Result<Entry, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a file", path.display()));
    }
    Ok(Entry {
        name: name.into(),
        source: Source::File(path.to_path_buf()),
        bytes: meta.len(),
        mode,
    })
}

/// The zip's entries, sorted by name, or why they cannot make a function.
pub fn entries(mark: &Path, ort: &Path, models: &Models) -> Result<Vec<Entry>, String> {
    let boot = bootstrap(models);
    let mut out = vec![
        Entry {
            name: "bootstrap".into(),
            bytes: boot.len() as u64,
            source: Source::Text(boot),
            mode: 0o755,
        },
        file("mark", mark, 0o755)?,
        file("libonnxruntime.so", ort, 0o644)?,
    ];
    // the binaries first, from their metadata: the usual reason to refuse, before any model is read
    check(&out)?;
    if let Models::Bundled(dir) = models {
        crate::repo::scan(dir).map_err(|e| e.to_string())?;
        let m = crate::repo::remote::Manifest::of_dir(dir)?;
        for f in &m.files {
            out.push(file(
                &format!("models/{}", f.path),
                &dir.join(&f.path),
                0o644,
            )?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    check(&out)?;
    Ok(out)
}

/// Lambda's unzipped limit, from the entries' sizes; the largest named when it is passed.
pub fn check(entries: &[Entry]) -> Result<u64, String> {
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    if total <= UNZIPPED_LIMIT {
        return Ok(total);
    }
    let mut big: Vec<&Entry> = entries.iter().collect();
    big.sort_by_key(|e| std::cmp::Reverse(e.bytes));
    let named: Vec<String> = big
        .iter()
        .take(3)
        .map(|e| format!("{} {}", e.name, super::mib(e.bytes)))
        .collect();
    let hint = if big.first().is_some_and(|e| e.name == "mark") {
        " (a `mark` built with debug info is that large: ship a stripped copy, `strip -o \
         mark.lambda target/release/mark`, with --mark-binary or [deploy] mark_binary)"
    } else {
        " (serve the models from S3: --model-repo s3://...)"
    };
    Err(format!(
        "the function would be {} unzipped, more than Lambda's {} ({UNZIPPED_LIMIT} bytes): {}{hint}",
        super::mib(total),
        super::mib(UNZIPPED_LIMIT),
        named.join(", ")
    ))
}

/// Writes the zip of `entries` to `out`; the bytes read are checked against the sizes checked.
pub fn write<W: Write + Seek>(entries: &[Entry], out: W) -> Result<W, String> {
    let mut z = ZipWriter::new(out);
    for e in entries {
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(DateTime::default())
            .unix_permissions(e.mode)
            .large_file(e.bytes >= u64::from(u32::MAX));
        z.start_file(e.name.as_str(), opts)
            .map_err(|x| format!("{}: {x}", e.name))?;
        let n = match &e.source {
            Source::Text(t) => {
                z.write_all(t.as_bytes())
                    .map_err(|x| format!("{}: {x}", e.name))?;
                t.len() as u64
            }
            Source::File(p) => {
                // at most the size checked, even if the file grew since
                let f = std::fs::File::open(p).map_err(|x| format!("{}: {x}", p.display()))?;
                std::io::copy(&mut std::io::Read::take(f, e.bytes + 1), &mut z)
                    .map_err(|x| format!("{}: {x}", p.display()))?
            }
        };
        if n != e.bytes {
            return Err(format!(
                "{}: {n} bytes read, {} when its size was checked (changed while packaging)",
                e.name, e.bytes
            ));
        }
    }
    z.finish().map_err(|e| format!("finishing the zip: {e}"))
}

/// The zip in memory, with its sha256 (base64, as Lambda's `CodeSha256`).
pub fn build(entries: &[Entry]) -> Result<(Vec<u8>, String), String> {
    let bytes = write(entries, std::io::Cursor::new(Vec::new()))?.into_inner();
    use base64::Engine as _;
    use sha2::Digest as _;
    let sha = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes));
    Ok((bytes, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mark-zip-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_same_inputs_give_the_same_zip_and_a_changed_file_another() {
        let d = temp("same");
        std::fs::write(d.join("mark"), b"binary").unwrap();
        std::fs::write(d.join("ort.so"), b"library").unwrap();
        let models = Models::Remote("s3://b/p".into());
        let e = entries(&d.join("mark"), &d.join("ort.so"), &models).unwrap();
        let names: Vec<&str> = e.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["bootstrap", "libonnxruntime.so", "mark"]);
        let (a, sha_a) = build(&e).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (b, sha_b) = build(&e).unwrap();
        assert_eq!((a, &sha_a), (b, &sha_b), "deterministic");
        std::fs::write(d.join("mark"), b"binary2").unwrap();
        let e2 = entries(&d.join("mark"), &d.join("ort.so"), &models).unwrap();
        assert_ne!(build(&e2).unwrap().1, sha_a);
        // a file that changes size after the check is refused, not silently cut
        std::fs::write(d.join("mark"), b"binary22").unwrap();
        assert!(build(&e2).unwrap_err().contains("changed while packaging"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn over_lambdas_unzipped_limit_is_refused_before_reading_naming_the_largest() {
        let big = Entry {
            name: "mark".into(),
            source: Source::File("/nonexistent".into()),
            bytes: 240 << 20,
            mode: 0o755,
        };
        let ort = Entry {
            name: "libonnxruntime.so".into(),
            source: Source::File("/nonexistent".into()),
            bytes: 29 << 20,
            mode: 0o644,
        };
        let e = check(&[big, ort]).unwrap_err();
        assert!(
            e.contains("more than Lambda's 250.0 MiB (262144000 bytes)"),
            "{e}"
        );
        assert!(
            e.contains("mark 240.0 MiB, libonnxruntime.so 29.0 MiB"),
            "{e}"
        );
        assert!(e.contains("strip -o mark.lambda"), "{e}");
    }

    #[test]
    fn the_bootstrap_quotes_the_repository_and_bundled_models_live_in_the_task_root() {
        let b = bootstrap(&Models::Remote("s3://b/p'x".into()));
        assert!(b.contains("--model-repo 's3://b/p'\\''x'"), "{b}");
        let b = bootstrap(&Models::Bundled("models".into()));
        assert!(
            b.contains("--model-repo \"$LAMBDA_TASK_ROOT/models\""),
            "{b}"
        );
    }
}
