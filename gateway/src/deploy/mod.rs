//! From a laptop to an AWS account: `mark package lambda` (the function's zip), `mark package
//! worker` (the runtime in the bucket and the user data for a stock AMI) and `mark deploy --config
//! FILE` (creates or updates what the gateway's config file names: the runtime objects, the Lambda
//! function, the workers' launch template, the lease table; prints the IAM documents). Every step
//! reads first and changes only what differs, so a second run changes nothing; `--dry-run` makes
//! the reads and prints the writes.

pub mod aws;
pub mod config;
pub mod iam;
pub mod lambda_zip;
pub mod worker_boot;

use std::path::{Path, PathBuf};

use crate::failure::{runtime, Failure};
use crate::repo::remote;

use aws::BlobBody;
use worker_boot::{Blob, Boot};

/// The `mark` binary to ship: `explicit`, else this one.
fn mark_binary(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    match explicit {
        Some(p) if p.is_file() => Ok(p.to_path_buf()),
        Some(p) => Err(Failure::config(format!(
            "--mark-binary {}: not a file",
            p.display()
        ))),
        None => std::env::current_exe()
            .map_err(|e| Failure::failed(format!("this executable's path: {e}"))),
    }
}

fn ort(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    crate::exec::ort_lib::find(explicit).map_err(|e| Failure::config(e.to_string()))
}

/// `mark package lambda --out FILE`.
pub fn package_lambda(
    out: &Path,
    model_repo: &str,
    mark: Option<&Path>,
    ort_lib: Option<&Path>,
) -> Result<(), Failure> {
    let models = match remote::Location::parse(model_repo).map_err(Failure::config)? {
        remote::Location::S3 { .. } => lambda_zip::Models::Remote(model_repo.to_string()),
        remote::Location::Local(d) => lambda_zip::Models::Bundled(d),
    };
    let entries = lambda_zip::entries(&mark_binary(mark)?, &ort(ort_lib)?, &models)
        .map_err(Failure::config)?;
    let unzipped = lambda_zip::check(&entries).map_err(Failure::config)?;
    // written beside the target and renamed: a failed run leaves no half zip under its name
    let part = out.with_extension(format!("part.{}", std::process::id()));
    let file = std::fs::File::create(&part)
        .map_err(|e| Failure::failed(format!("{}: {e}", part.display())))?;
    let written = lambda_zip::write(&entries, std::io::BufWriter::new(file)).and_then(|mut w| {
        std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
        w.into_inner()
            .map_err(|e| e.to_string())?
            .sync_all()
            .map_err(|e| e.to_string())
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(Failure::failed(e));
    }
    std::fs::rename(&part, out).map_err(|e| Failure::failed(format!("{}: {e}", out.display())))?;
    let zipped = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {}: {} files, {} zipped, {} unzipped (Lambda: {} at most)",
        out.display(),
        entries.len(),
        mib(zipped),
        mib(unzipped),
        mib(lambda_zip::UNZIPPED_LIMIT)
    );
    if zipped > lambda_zip::DIRECT_UPLOAD_LIMIT {
        println!(
            "note: more than {} zipped: upload it through S3 (mark deploy does), not in the API call",
            mib(lambda_zip::DIRECT_UPLOAD_LIMIT)
        );
    }
    Ok(())
}

fn s3_location(repo: &str) -> Result<(String, String), Failure> {
    match remote::Location::parse(repo).map_err(Failure::config)? {
        remote::Location::S3 { bucket, prefix } => Ok((bucket, prefix)),
        remote::Location::Local(_) => Err(Failure::config(format!(
            "--model-repo {repo}: the workers fetch from S3: an s3:// URL (mark repo push first)"
        ))),
    }
}

/// Puts `mark` and `libonnxruntime.so` under the repository's `runtime/` (by digest); their
/// blobs, each line on what was done given to `say`.
async fn runtime_blobs(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    files: (&Path, &Path),
    dry: bool,
    say: &dyn Fn(String),
) -> Result<(Blob, Blob), String> {
    let key = aws::key(prefix, "runtime/{sha256}");
    let (m, did) = aws::put_blob(s3, bucket, &key, BlobBody::File(files.0), dry).await?;
    say(format!("runtime: mark {} ({}): {did}", m.url, mib(m.bytes)));
    let (o, did) = aws::put_blob(s3, bucket, &key, BlobBody::File(files.1), dry).await?;
    say(format!(
        "runtime: libonnxruntime.so {} ({}): {did}",
        o.url,
        mib(o.bytes)
    ));
    Ok((m, o))
}

/// `n` bytes in MiB, as Lambda's and S3's limits are written.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
}

/// The S3 client's region (the workers' user data carries it), checked for the script.
fn region_of(s3: &aws_sdk_s3::Client) -> Result<String, String> {
    let r = s3
        .config()
        .region()
        .map_or_else(|| "us-east-1".to_string(), |r| r.to_string());
    worker_boot::check_region(&r)?;
    Ok(r)
}

/// `mark package worker --model-repo s3://...`: the runtime into the bucket, the user data out
/// (standard output unless `out`; progress on standard error).
pub fn package_worker(
    model_repo: &str,
    out: Option<&Path>,
    mark: Option<&Path>,
    ort_lib: Option<&Path>,
) -> Result<(), Failure> {
    let (bucket, prefix) = s3_location(model_repo)?;
    let (mark, ort) = (mark_binary(mark)?, ort(ort_lib)?);
    let endpoint = std::env::var("MARK_S3_ENDPOINT").ok();
    let (m, o, region) = runtime()?
        .block_on(async {
            let s3 = remote::client(endpoint.as_deref()).await;
            let region = region_of(&s3)?;
            let say = |l: String| eprintln!("{l}");
            let (m, o) = runtime_blobs(&s3, &bucket, &prefix, (&mark, &ort), false, &say).await?;
            Ok::<_, String>((m, o, region))
        })
        .map_err(Failure::failed)?;
    let script = worker_boot::script(&Boot {
        repo: model_repo.to_string(),
        mark: m,
        ort: o,
        port: crate::cloud::ec2::WORKER_PORT,
        region,
    });
    match out {
        None => print!("{script}"),
        Some(p) => {
            std::fs::write(p, &script)
                .map_err(|e| Failure::failed(format!("{}: {e}", p.display())))?;
            eprintln!(
                "wrote {} ({} bytes of user data)",
                p.display(),
                script.len()
            );
        }
    }
    Ok(())
}

/// `mark deploy --config FILE [--dry-run]`.
pub fn deploy(file: &Path, dry: bool) -> Result<(), Failure> {
    let s = config::read(file).map_err(Failure::config)?;
    let mark = mark_binary(s.deploy.mark_binary.as_deref())?;
    let ort = ort(s.serve.ort_lib.as_deref())?;
    // everything that can be judged here is, before anything is changed
    let function = match (
        s.function_name(),
        s.catalog.as_ref().and_then(|c| c.lambda.as_ref()),
    ) {
        (Some(name), Some(lambda)) => Some(function_plan(&s, name, lambda, &mark, &ort)?),
        _ => None,
    };
    if dry {
        println!("dry run: reads only; nothing below is changed");
    }
    runtime()?
        .block_on(apply(&s, function, (&mark, &ort), dry))
        .map_err(Failure::failed)
}

/// The function's zip (built in memory, its size checked) and settings.
fn function_plan(
    s: &config::Settings,
    name: String,
    lambda: &crate::control::catalog::LambdaSpec,
    mark: &Path,
    ort: &Path,
) -> Result<(aws::Function, Vec<u8>), Failure> {
    let repo = s.serve.model_repo.to_string_lossy().to_string();
    let memory_mb = lambda.memory_mb.round();
    if !(128.0..=10240.0).contains(&memory_mb) {
        return Err(Failure::config(format!(
            "catalog [lambda] memory_mb = {}: Lambda allows 128 to 10240",
            lambda.memory_mb
        )));
    }
    let entries = lambda_zip::entries(mark, ort, &lambda_zip::Models::Remote(repo))
        .map_err(Failure::config)?;
    let (zip, code_sha256) = lambda_zip::build(&entries).map_err(Failure::failed)?;
    let concurrency = match s.deploy.reserved_concurrency {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(lambda.concurrency_limit),
    }
    .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let f = aws::Function {
        name,
        role: s.deploy.lambda_role.clone().unwrap_or_default(),
        memory_mb: memory_mb as i32,
        timeout_s: s.deploy.lambda_timeout_s as i32,
        concurrency,
        bucket: s.bucket.clone(),
        key: String::new(),
        code_sha256,
    };
    Ok((f, zip))
}

async fn apply(
    s: &config::Settings,
    function: Option<(aws::Function, Vec<u8>)>,
    files: (&Path, &Path),
    dry: bool,
) -> Result<(), String> {
    let c = &s.serve.control;
    let repo = s.serve.model_repo.to_string_lossy().to_string();
    let endpoint = std::env::var("MARK_S3_ENDPOINT").ok();
    let s3 = remote::client(endpoint.as_deref()).await;
    let region = region_of(&s3)?;
    let m = remote::manifest(&s3, &s.bucket, &s.prefix)
        .await
        .map_err(|e| format!("{e} (push the models first: mark repo push DIR {repo})"))?;
    println!(
        "repository {repo}: version {}, {} files",
        m.version,
        m.files.len()
    );
    let say = |l: String| println!("{l}");
    let (mark_blob, ort_blob) = runtime_blobs(&s3, &s.bucket, &s.prefix, files, dry, &say).await?;
    let mut serve_keys: Vec<String> = Vec::new();
    if let Some(name) = s.template_name() {
        let cfg =
            crate::aws_sdk::sdk_config(&c.ec2_region, c.ec2_endpoint.as_deref(), None, 3).await;
        let ec2 = aws_sdk_ec2::Client::new(&cfg);
        let t = aws::Template {
            name: name.clone(),
            image_id: s.image_id().unwrap_or_default().to_string(),
            user_data: worker_boot::script(&Boot {
                repo: repo.clone(),
                mark: mark_blob,
                ort: ort_blob,
                port: crate::cloud::ec2::WORKER_PORT,
                region,
            }),
            instance_profile: s.deploy.instance_profile.clone(),
            security_groups: s.deploy.security_groups.clone(),
        };
        println!(
            "launch template {name}: {}",
            aws::template(&ec2, &t, dry).await?
        );
        if c.ec2_launch_template.is_none() {
            serve_keys.push(format!("ec2_launch_template = {name:?}"));
        }
        if !c.ec2_template_user_data {
            serve_keys.push("ec2_template_user_data = true".into());
        }
    }
    if let Some((mut f, zip)) = function {
        let key = aws::key(&s.prefix, "lambda/{sha256}.zip");
        let (blob, did) = aws::put_blob(&s3, &s.bucket, &key, BlobBody::Bytes(&zip), dry).await?;
        println!(
            "lambda {}: code {} ({} zipped): {did}",
            f.name,
            blob.url,
            mib(blob.bytes)
        );
        f.key = blob.key;
        let cfg =
            crate::aws_sdk::sdk_config(&c.lambda_region, c.lambda_endpoint.as_deref(), None, 3)
                .await;
        let l = aws_sdk_lambda::Client::new(&cfg);
        for line in aws::function(&l, &f, dry).await? {
            println!("lambda {}: {line}", f.name);
        }
    }
    if let Some(table) = &c.replica.lease_table {
        let store = crate::replica::store::Store::connect(&crate::replica::store::StoreOptions {
            table: table.clone(),
            region: c.replica.lease_region.clone(),
            endpoint: c.replica.lease_endpoint.clone(),
            fleet: c.fleet.clone(),
            credentials: None,
        })
        .await;
        let exists = store
            .table_exists()
            .await
            .map_err(|e| format!("lease table {table}: {e}"))?;
        let did = if exists {
            "exists"
        } else if dry {
            "would be created (on demand, TTL on ttl)"
        } else {
            store
                .ensure_table()
                .await
                .map_err(|e| format!("lease table {table}: {e}"))?;
            "created (on demand, TTL on ttl)"
        };
        println!("lease table {table}: {did}");
    }
    let names = iam::Names {
        region: c.ec2_region.clone(),
        lambda_region: c.lambda_region.clone(),
        bucket: s.bucket.clone(),
        prefix: s.prefix.clone(),
        fleet: c.fleet.clone(),
        function: s.function_name(),
        table: c.replica.lease_table.clone(),
        worker_role: "arn:aws:iam::ACCOUNT:role/THE-ROLE-OF-YOUR-WORKERS-INSTANCE-PROFILE".into(),
        lambda_role: s.deploy.lambda_role.clone(),
    };
    print!("{}", iam::print_all(&names));
    if serve_keys.is_empty() {
        println!("{} is ready for mark serve --config", s.file.display());
    } else {
        println!(
            "add to {} before mark serve --config: {}",
            s.file.display(),
            serve_keys.join("; ")
        );
    }
    Ok(())
}
