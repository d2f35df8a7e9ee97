//! Model repositories in object storage: `--model-repo s3://bucket/prefix` (and `file://PATH`
//! or a plain path) for `mark serve`, `mark worker` and `mark lambda`; `mark repo push DIR
//! s3://bucket/prefix` writes one.
//!
//! Layout under the prefix: `objects/<sha256>` (each file once, by its content) and
//! `manifest.json` (the repository's `version` and each file's path, sha256 and size), written
//! last, so a reader sees the old repository or the new one, never half of one. A reader fetches
//! into a local cache, `<cache>/<version>/`, checking every object's size and sha256 as it
//! streams in, and renames the finished directory into place (a version directory is complete
//! or absent); `<cache>/current` points at the last verified one. A corrupted or missing object
//! fails the fetch with the object named, and the last verified version serves instead.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::DisplayErrorContext;
use sha2::{Digest, Sha256};

use super::manifest::MAX_MANIFEST_BYTES;
pub use super::manifest::{hex, Entry, Location, Manifest, MANIFEST};
#[cfg(test)]
use super::manifest::{version_of, MAX_FILE_BYTES};

/// An S3 client (`MARK_S3_ENDPOINT` or `endpoint`: an emulator, path-style addressing).
pub async fn client(endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".into());
    let cfg = crate::aws_sdk::sdk_config(&region, endpoint, None, 3).await;
    let conf = aws_sdk_s3::config::Builder::from(&cfg)
        .force_path_style(endpoint.is_some())
        // a model is large: the deadline is per call, generous; a stalled stream still ends
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(crate::aws_sdk::CONNECT_TIMEOUT)
                .operation_timeout(std::time::Duration::from_secs(1800))
                .read_timeout(std::time::Duration::from_secs(60))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Deadline of a call that moves no model bytes (HEAD, the bucket, a manifest): the client's own
/// deadline is sized for a model's download.
const META_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// `call` under [`META_DEADLINE`].
async fn within<T>(what: &str, call: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(META_DEADLINE, call)
        .await
        .map_err(|_| format!("{what}: no answer within {} s", META_DEADLINE.as_secs()))
}

fn err<E: std::error::Error + 'static>(what: &str, e: E) -> String {
    format!("{what}: {}", DisplayErrorContext(e))
}

/// `mark repo push DIR s3://bucket/prefix`: every file not yet stored, then the manifest.
pub async fn push(
    s3: &aws_sdk_s3::Client,
    dir: &Path,
    bucket: &str,
    prefix: &str,
) -> Result<(Manifest, usize), String> {
    let m = Manifest::of_dir(dir)?;
    // only a bucket that is not there is created (a 403 is an answer to report, not a cue)
    match within(
        &format!("s3://{bucket}"),
        s3.head_bucket().bucket(bucket).send(),
    )
    .await?
    {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => {
            // outside us-east-1 S3 wants the region named in the request
            let region = s3.config().region().map(|r| r.to_string());
            let place = region.filter(|r| r != "us-east-1").map(|r| {
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        r.as_str(),
                    ))
                    .build()
            });
            within(
                &format!("creating bucket {bucket}"),
                s3.create_bucket()
                    .bucket(bucket)
                    .set_create_bucket_configuration(place)
                    .send(),
            )
            .await?
            .map_err(|e| err(&format!("creating bucket {bucket}"), e))?;
        }
        Err(e) => return Err(err(&format!("s3://{bucket}"), e)),
    }
    let mut uploaded = 0;
    for e in &m.files {
        let key = Location::key(prefix, &format!("objects/{}", e.sha256));
        let there = within(&key, s3.head_object().bucket(bucket).key(&key).send())
            .await?
            .is_ok_and(|h| h.content_length() == Some(e.bytes as i64));
        if there {
            continue;
        }
        let body = aws_sdk_s3::primitives::ByteStream::from_path(dir.join(&e.path))
            .await
            .map_err(|x| format!("{}: {x}", e.path))?;
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(body)
            .send()
            .await
            .map_err(|x| err(&format!("s3://{bucket}/{key} ({})", e.path), x))?;
        uploaded += 1;
    }
    let text = serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?;
    let key = Location::key(prefix, MANIFEST);
    let put = s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(text.into())
        .content_type("application/json")
        .send();
    within(&key, put)
        .await?
        .map_err(|e| err(&format!("s3://{bucket}/{key}"), e))?;
    Ok((m, uploaded))
}

/// Reads the object at `key` into `out`, at most `cap` bytes; its size.
async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    cap: u64,
    out: &mut dyn std::io::Write,
    h: &mut Sha256,
) -> Result<u64, String> {
    let name = format!("s3://{bucket}/{key}");
    let o = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| err(&name, e))?;
    if o.content_length().is_some_and(|n| n < 0 || n as u64 > cap) {
        return Err(format!(
            "{name}: {:?} bytes, more than the {cap} expected",
            o.content_length()
        ));
    }
    let mut body = o.body;
    let mut n = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| err(&name, e))? {
        n += chunk.len() as u64;
        if n > cap {
            return Err(format!("{name}: more than the {cap} bytes expected"));
        }
        h.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| format!("{name}: writing: {e}"))?;
    }
    Ok(n)
}

/// The manifest at `s3://bucket/prefix`.
pub async fn manifest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Manifest, String> {
    let key = Location::key(prefix, MANIFEST);
    let mut buf = Vec::new();
    download(
        s3,
        bucket,
        &key,
        MAX_MANIFEST_BYTES,
        &mut buf,
        &mut Sha256::new(),
    )
    .await?;
    let m: Manifest = serde_json::from_slice(&buf)
        .map_err(|e| format!("s3://{bucket}/{key}: not a manifest: {e}"))?;
    m.check().map_err(|e| format!("s3://{bucket}/{key}: {e}"))?;
    Ok(m)
}

/// Fetches the repository at `s3://bucket/prefix` into `cache` (verified, atomic); its directory.
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    cache: &Path,
) -> Result<PathBuf, String> {
    let m = manifest(s3, bucket, prefix).await?;
    let dir = cache.join(&m.version);
    if verified(&dir, &m) {
        point_current(cache, &m.version)?;
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    // a name of this process alone (two containers sharing the cache may both be pid 1)
    let tmp = cache.join(format!(
        ".tmp-{}-{}-{:016x}",
        m.version,
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = async {
        for e in &m.files {
            let path = tmp.join(&e.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|x| format!("{}: {x}", parent.display()))?;
            }
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&path).map_err(|x| format!("{}: {x}", path.display()))?,
            );
            let key = Location::key(prefix, &format!("objects/{}", e.sha256));
            let mut h = Sha256::new();
            let n = download(s3, bucket, &key, e.bytes, &mut f, &mut h).await?;
            // on disk before the directory is marked verified
            f.into_inner()
                .map_err(|x| format!("{}: {x}", path.display()))?
                .sync_all()
                .map_err(|x| format!("{}: {x}", path.display()))?;
            let got = hex(&h.finalize());
            if n != e.bytes || got != e.sha256 {
                return Err(format!(
                    "s3://{bucket}/{key} ({}): {n} bytes with sha256 {got}, the manifest says {} bytes with {}: refused",
                    e.path, e.bytes, e.sha256
                ));
            }
        }
        std::fs::write(tmp.join(".verified"), &m.version).map_err(|x| x.to_string())?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // another process finished the same version first
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".verified").is_file() {
            return Err(format!("{}: could not be put in place", dir.display()));
        }
    }
    point_current(cache, &m.version)?;
    Ok(dir)
}

/// `<cache>/current` → `version`, swapped atomically.
fn point_current(cache: &Path, version: &str) -> Result<(), String> {
    let link = cache.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(version, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    std::fs::rename(&link, cache.join("current")).map_err(|e| format!("{}: {e}", cache.display()))
}

/// A version directory marked verified whose files have the manifest's sizes.
fn verified(dir: &Path, m: &Manifest) -> bool {
    dir.join(".verified").is_file()
        && m.files.iter().all(|e| {
            std::fs::metadata(dir.join(&e.path)).is_ok_and(|md| md.is_file() && md.len() == e.bytes)
        })
}

/// The last verified version in `cache`, if any.
pub fn cached(cache: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(cache.join("current")).ok()?;
    dir.join(".verified").is_file().then_some(dir)
}

/// Where `url`'s versions are cached: `MARK_REPO_CACHE`, else `$XDG_CACHE_HOME/mark/repo`, else
/// `$HOME/.cache/mark/repo`, one directory per URL.
pub fn cache_dir(url: &str) -> PathBuf {
    let root = std::env::var_os("MARK_REPO_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("mark/repo")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/mark/repo")))
        .unwrap_or_else(|| std::env::temp_dir().join("mark-repo"));
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    root.join(&hex(&h.finalize())[..16])
}

/// The local directory of `--model-repo`: the directory itself, or the object store's latest
/// version fetched and verified into the cache — or, when that fails, the last verified one
/// (with a warning); an error when there is none.
pub fn resolve(repo: &Path) -> Result<PathBuf, String> {
    let url = repo.to_string_lossy().to_string();
    let (bucket, prefix) = match Location::parse(&url)? {
        Location::Local(p) => return Ok(p),
        Location::S3 { bucket, prefix } => (bucket, prefix),
    };
    let cache = cache_dir(&url);
    let endpoint = std::env::var("MARK_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let got = rt.block_on(async {
        let s3 = client(endpoint.as_deref()).await;
        fetch(&s3, &bucket, &prefix, &cache).await
    });
    match got {
        Ok(dir) => {
            tracing::info!(repo = %url, dir = %dir.display(), "model repository fetched and verified");
            Ok(dir)
        }
        Err(e) => match cached(&cache) {
            Some(dir) => {
                tracing::error!(repo = %url, cause = %e, dir = %dir.display(), "fetching the model repository failed: serving the last verified version");
                Ok(dir)
            }
            None => Err(format!(
                "--model-repo {url}: {e} (and no verified version in {})",
                cache.display()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_refuse_what_is_not_one() {
        assert_eq!(
            Location::parse("s3://my-bucket/models/prod/").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "models/prod".into()
            }
        );
        assert_eq!(
            Location::parse("file:///srv/m").unwrap(),
            Location::Local("/srv/m".into())
        );
        assert_eq!(
            Location::parse("models").unwrap(),
            Location::Local("models".into())
        );
        for bad in ["s3://A/x", "s3://ab", "s3://bucket/../x", "gs://b/p"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_manifest_asks_for_nothing_outside_its_bounds() {
        let ok = Entry {
            path: "mlp/model.onnx".into(),
            sha256: "a".repeat(64),
            bytes: 10,
        };
        let m = |files: Vec<Entry>| Manifest {
            version: version_of(&files),
            files,
        };
        assert!(m(vec![ok.clone()]).check().is_ok());
        for (path, sha, bytes) in [
            ("../etc/passwd", "a".repeat(64), 1),
            ("/abs", "a".repeat(64), 1),
            ("a//b", "a".repeat(64), 1),
            ("mlp/model.onnx", "z".repeat(64), 1),
            ("mlp/model.onnx", "a".repeat(64), MAX_FILE_BYTES + 1),
        ] {
            let e = Entry {
                path: path.into(),
                sha256: sha,
                bytes,
            };
            assert!(m(vec![e]).check().is_err(), "{path}");
        }
        assert!(m(vec![]).check().is_err());
        // a version that is not the files' digest (e.g. "current") is refused
        let mut forged = m(vec![ok.clone()]);
        forged.version = "current".into();
        assert!(forged.check().unwrap_err().contains("digest"));
    }

    #[test]
    fn a_directorys_manifest_is_its_content() {
        let dir = std::env::temp_dir().join(format!("mark-manifest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::write(dir.join("m/config.toml"), "slo_ms = 100\n").unwrap();
        std::fs::write(dir.join(".hidden"), "x").unwrap();
        let a = Manifest::of_dir(&dir).unwrap();
        assert_eq!(a.files.len(), 1);
        assert_eq!(a.files[0].path, "m/config.toml");
        std::fs::write(dir.join("m/config.toml"), "slo_ms = 200\n").unwrap();
        let b = Manifest::of_dir(&dir).unwrap();
        assert_ne!(a.version, b.version, "a changed file is a new version");
        let _ = std::fs::remove_dir_all(dir);
    }
}
