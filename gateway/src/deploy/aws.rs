//! The calls `mark deploy` makes, each idempotent: read what is there, change only what differs,
//! and say which. With `dry` only the reads are made and the writes are described.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_ec2::error::ProvideErrorMetadata as _;
use aws_sdk_ec2::types::{
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    RequestLaunchTemplateData, ResponseLaunchTemplateData,
};
use aws_sdk_lambda::types::{Architecture, FunctionCode, LastUpdateStatus, Runtime, State};
use aws_sdk_s3::error::DisplayErrorContext;
use sha2::{Digest as _, Sha256};

use super::worker_boot::Blob;
use crate::repo::remote::Location;

/// Deadline of a call that moves no large body.
const CALL: Duration = Duration::from_secs(60);
/// Longest wait for a function to finish an update (Lambda refuses the next one until then).
const SETTLE: Duration = Duration::from_secs(180);

async fn within<T>(what: &str, call: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(CALL, call)
        .await
        .map_err(|_| format!("{what}: no answer within {} s", CALL.as_secs()))
}

fn err<E: std::error::Error + 'static>(what: &str, e: E) -> String {
    format!("{what}: {}", DisplayErrorContext(e))
}

/// sha256 of a file (hex) and its size, streamed.
pub fn digest(path: &Path) -> Result<(String, u64), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((crate::repo::remote::hex(&h.finalize()), n))
}

/// Stores `body` (a file or bytes) at `key` unless an object of its size is there already;
/// the object's blob and what was done.
pub async fn put_blob(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: BlobBody<'_>,
    dry: bool,
) -> Result<(Blob, &'static str), String> {
    let (sha256, bytes) = match &body {
        BlobBody::File(p) => digest(p)?,
        BlobBody::Bytes(b) => (crate::repo::remote::hex(&Sha256::digest(b)), b.len() as u64),
    };
    let key = key.replace("{sha256}", &sha256);
    let url = format!("s3://{bucket}/{key}");
    let blob = Blob {
        url: url.clone(),
        bucket: bucket.to_string(),
        key: key.clone(),
        sha256,
        bytes,
    };
    // content-addressed, and the digest stored beside it: an object whose size and recorded
    // digest (and S3's own SHA-256, where it keeps one) are this content's is this content; an
    // object put there by anything else is replaced
    use base64::Engine as _;
    let sha_b64 = base64::engine::general_purpose::STANDARD.encode(
        (0..blob.sha256.len() / 2)
            .map(|i| u8::from_str_radix(&blob.sha256[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect::<Vec<u8>>(),
    );
    let head = within(
        &url,
        s3.head_object()
            .bucket(bucket)
            .key(&key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send(),
    )
    .await?;
    let there = match head {
        Ok(h) => {
            h.content_length() == Some(bytes as i64)
                && h.metadata().and_then(|m| m.get("sha256")) == Some(&blob.sha256)
                && h.checksum_sha256().is_none_or(|c| c == sha_b64)
        }
        Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => false,
        Err(e) => return Err(err(&url, e)),
    };
    if there {
        return Ok((blob, "already stored"));
    }
    if dry {
        return Ok((blob, "would upload"));
    }
    let stream = match body {
        BlobBody::File(p) => aws_sdk_s3::primitives::ByteStream::from_path(p)
            .await
            .map_err(|e| format!("{}: {e}", p.display()))?,
        BlobBody::Bytes(b) => b.to_vec().into(),
    };
    // S3 checks the body against the digest taken above: a file changed since is refused
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(stream)
        .checksum_sha256(&sha_b64)
        .metadata("sha256", &blob.sha256)
        .send()
        .await
        .map_err(|e| err(&url, e))?;
    Ok((blob, "uploaded"))
}

/// What [`put_blob`] stores.
pub enum BlobBody<'a> {
    /// A file, streamed.
    File(&'a Path),
    /// Bytes in memory.
    Bytes(&'a [u8]),
}

/// The key under the repository's prefix for `name` (`{sha256}` is replaced by the digest).
pub fn key(prefix: &str, name: &str) -> String {
    Location::key(prefix, name)
}

/// The function as `mark deploy` wants it.
#[derive(Debug, Clone)]
pub struct Function {
    /// Name.
    pub name: String,
    /// Execution role ARN.
    pub role: String,
    /// Memory, MB.
    pub memory_mb: i32,
    /// Timeout, s.
    pub timeout_s: i32,
    /// Reserved concurrency (`None`: the account's unreserved pool).
    pub concurrency: Option<i32>,
    /// The code's zip in S3.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// Its sha256, base64 (Lambda's `CodeSha256`).
    pub code_sha256: String,
}

/// Waits until the function accepts the next update (no creation or update in progress). After
/// an update of ours (`ours`), one that failed is an error; before one, a failed earlier update
/// is no obstacle (the function still runs its last good code and takes a new update).
async fn settle(l: &aws_sdk_lambda::Client, name: &str, ours: bool) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let c = within(
            name,
            l.get_function_configuration().function_name(name).send(),
        )
        .await?
        .map_err(|e| err(name, e))?;
        let pending = c.state() == Some(&State::Pending)
            || c.last_update_status() == Some(&LastUpdateStatus::InProgress);
        let failed = c.state() == Some(&State::Failed)
            || c.last_update_status() == Some(&LastUpdateStatus::Failed);
        if ours && failed && !pending {
            return Err(format!(
                "function {name}: {}",
                c.state_reason()
                    .or(c.last_update_status_reason())
                    .unwrap_or("the update failed")
            ));
        }
        if !pending {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "function {name}: still updating after {} s",
                SETTLE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Creates the function or brings it to `f`; what was done, one line each.
pub async fn function(
    l: &aws_sdk_lambda::Client,
    f: &Function,
    dry: bool,
) -> Result<Vec<String>, String> {
    let name = f.name.as_str();
    let mut said = Vec::new();
    let got = within(
        name,
        l.get_function_configuration().function_name(name).send(),
    )
    .await?;
    let code = || {
        FunctionCode::builder()
            .s3_bucket(&f.bucket)
            .s3_key(&f.key)
            .build()
    };
    match got {
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            let what = format!(
                "created (provided.al2023, x86_64, {} MB, {} s, code {})",
                f.memory_mb, f.timeout_s, f.code_sha256
            );
            if dry {
                said.push(format!("would be {what}"));
            } else {
                let o = within(
                    name,
                    l.create_function()
                        .function_name(name)
                        .runtime(Runtime::Providedal2023)
                        .architectures(Architecture::X8664)
                        .handler("bootstrap")
                        .role(&f.role)
                        .memory_size(f.memory_mb)
                        .timeout(f.timeout_s)
                        .description("MArk-rs spill-over (mark deploy)")
                        .code(code())
                        .send(),
                )
                .await?
                .map_err(|e| err(&format!("creating function {name}"), e))?;
                same_code(name, o.code_sha256(), &f.code_sha256)?;
                settle(l, name, true).await?;
                said.push(what);
            }
        }
        Err(e) => return Err(err(name, e)),
        Ok(c) => {
            let config_same = c.role() == Some(f.role.as_str())
                && c.memory_size() == Some(f.memory_mb)
                && c.timeout() == Some(f.timeout_s)
                && c.handler() == Some("bootstrap")
                && c.runtime() == Some(&Runtime::Providedal2023);
            if config_same {
                said.push("configuration unchanged".into());
            } else if dry {
                said.push(format!(
                    "configuration would be updated ({} MB, {} s, role {})",
                    f.memory_mb, f.timeout_s, f.role
                ));
            } else {
                settle(l, name, false).await?;
                within(
                    name,
                    l.update_function_configuration()
                        .function_name(name)
                        .role(&f.role)
                        .memory_size(f.memory_mb)
                        .timeout(f.timeout_s)
                        .handler("bootstrap")
                        .runtime(Runtime::Providedal2023)
                        .send(),
                )
                .await?
                .map_err(|e| err(&format!("updating function {name}"), e))?;
                settle(l, name, true).await?;
                said.push(format!(
                    "configuration updated ({} MB, {} s)",
                    f.memory_mb, f.timeout_s
                ));
            }
            if c.code_sha256() == Some(f.code_sha256.as_str()) {
                said.push(format!("code unchanged ({})", f.code_sha256));
            } else if dry {
                said.push(format!("code would be updated to {}", f.code_sha256));
            } else {
                settle(l, name, false).await?;
                let o = within(
                    name,
                    l.update_function_code()
                        .function_name(name)
                        .s3_bucket(&f.bucket)
                        .s3_key(&f.key)
                        .send(),
                )
                .await?
                .map_err(|e| err(&format!("updating the code of {name}"), e))?;
                same_code(name, o.code_sha256(), &f.code_sha256)?;
                settle(l, name, true).await?;
                said.push(format!("code updated to {}", f.code_sha256));
            }
        }
    }
    if let Some(want) = f.concurrency {
        said.push(
            reserve(
                l,
                name,
                want,
                dry,
                said.iter().any(|s| s.starts_with("would be created")),
            )
            .await?,
        );
    } else {
        said.push("no reserved concurrency ([deploy] reserved_concurrency = 0)".into());
    }
    Ok(said)
}

/// The code Lambda says it holds is the code uploaded.
fn same_code(name: &str, got: Option<&str>, want: &str) -> Result<(), String> {
    match got {
        Some(g) if g != want => Err(format!(
            "function {name}: Lambda holds code {g}, the zip uploaded is {want}"
        )),
        _ => Ok(()),
    }
}

/// Lambda keeps 100 of an account's concurrency unreserved: a reservation that would leave
/// fewer is refused.
const UNRESERVED_MIN: i32 = 100;

/// Reserves `want` concurrent executions for the function (capped to what the account can
/// give, when its settings can be read); what was done.
async fn reserve(
    l: &aws_sdk_lambda::Client,
    name: &str,
    want: i32,
    dry: bool,
    new: bool,
) -> Result<String, String> {
    let reserved = if new {
        None
    } else {
        within(
            name,
            l.get_function_concurrency().function_name(name).send(),
        )
        .await?
        .map_err(|e| err(name, e))?
        .reserved_concurrent_executions()
    };
    // the account's unreserved pool, this function's own reservation included
    let pool = within(name, l.get_account_settings().send())
        .await?
        .ok()
        .and_then(|a| {
            a.account_limit()
                .and_then(|l| l.unreserved_concurrent_executions())
        });
    let (n, note) = match pool {
        Some(p) if want > p + reserved.unwrap_or(0) - UNRESERVED_MIN => {
            let cap = (p + reserved.unwrap_or(0) - UNRESERVED_MIN).max(0);
            (
                cap,
                format!(" (the catalog's {want} capped: Lambda keeps {UNRESERVED_MIN} of the account unreserved)"),
            )
        }
        _ => (want, String::new()),
    };
    if reserved == Some(n) {
        return Ok(format!("reserved concurrency {n} unchanged{note}"));
    }
    if dry {
        return Ok(format!("reserved concurrency would be {n}{note}"));
    }
    if n == 0 {
        return Err(format!(
            "function {name}: the account has no concurrency left to reserve; set [deploy] \
             reserved_concurrency = 0 to use the unreserved pool"
        ));
    }
    within(
        name,
        l.put_function_concurrency()
            .function_name(name)
            .reserved_concurrent_executions(n)
            .send(),
    )
    .await?
    .map_err(|e| {
        err(
            &format!(
                "reserving {n} concurrent executions for {name} (Lambda keeps {UNRESERVED_MIN} of \
                 the account unreserved; [deploy] reserved_concurrency sets another number, 0 none)"
            ),
            e,
        )
    })?;
    Ok(format!("reserved concurrency {n}{note}"))
}

/// The workers' launch template as `mark deploy` wants it.
#[derive(Debug, Clone)]
pub struct Template {
    /// Name.
    pub name: String,
    /// AMI.
    pub image_id: String,
    /// User data (plain text; base64 on the wire).
    pub user_data: String,
    /// Instance profile name or ARN.
    pub instance_profile: Option<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
}

impl Template {
    fn user_data_b64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.user_data.as_bytes())
    }

    fn data(&self) -> RequestLaunchTemplateData {
        let mut d = RequestLaunchTemplateData::builder()
            .image_id(&self.image_id)
            .user_data(self.user_data_b64())
            .set_security_group_ids(Some(self.security_groups.clone()).filter(|g| !g.is_empty()))
            // IMDSv2 only; hop limit 1: the worker runs on the host, nothing behind it needs it
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            );
        if let Some(p) = &self.instance_profile {
            let spec = LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
            d = d.iam_instance_profile(if p.starts_with("arn:") {
                spec.arn(p).build()
            } else {
                spec.name(p).build()
            });
        }
        d.build()
    }

    /// Whether `have` (the default version's data) already is this template.
    fn same(&self, have: &ResponseLaunchTemplateData) -> bool {
        let profile = have
            .iam_instance_profile()
            .and_then(|p| p.arn().or(p.name()))
            .map(str::to_string);
        let mut groups = have.security_group_ids().to_vec();
        groups.sort();
        let mut want = self.security_groups.clone();
        want.sort();
        have.image_id() == Some(self.image_id.as_str())
            && have.user_data() == Some(self.user_data_b64().as_str())
            && profile == self.instance_profile
            && groups == want
            && have
                .metadata_options()
                .and_then(|m| m.http_tokens())
                .is_some_and(|t| t.as_str() == "required")
    }
}

/// Creates the template or a new default version of it when it differs; what was done.
pub async fn template(
    ec2: &aws_sdk_ec2::Client,
    t: &Template,
    dry: bool,
) -> Result<String, String> {
    let name = t.name.as_str();
    let got = within(
        name,
        ec2.describe_launch_template_versions()
            .launch_template_name(name)
            .versions("$Default")
            .send(),
    )
    .await?;
    let have = match got {
        Ok(o) => o.launch_template_versions().first().cloned(),
        Err(e) if e.code().is_some_and(|c| c.contains("NotFound")) => None,
        Err(e) => return Err(err(&format!("launch template {name}"), e)),
    };
    let Some(have) = have else {
        if dry {
            return Ok("would be created (IMDSv2 required, the worker's user data)".into());
        }
        let o = within(
            name,
            ec2.create_launch_template()
                .launch_template_name(name)
                .launch_template_data(t.data())
                .send(),
        )
        .await?
        .map_err(|e| err(&format!("creating launch template {name}"), e))?;
        let v = o
            .launch_template()
            .and_then(|l| l.latest_version_number())
            .unwrap_or(1);
        return Ok(format!(
            "created, version {v} (IMDSv2 required, the worker's user data)"
        ));
    };
    let version = have.version_number().unwrap_or_default();
    if have.launch_template_data().is_some_and(|d| t.same(d)) {
        return Ok(format!("version {version} unchanged"));
    }
    if dry {
        return Ok(format!(
            "a new default version would replace version {version}"
        ));
    }
    let o = within(
        name,
        // on top of the default version: what an operator added by hand (a key pair, volumes,
        // tags) is kept; the fields set here replace theirs
        ec2.create_launch_template_version()
            .launch_template_name(name)
            .source_version(version.to_string())
            .launch_template_data(t.data())
            .send(),
    )
    .await?
    .map_err(|e| err(&format!("new version of launch template {name}"), e))?;
    let v = o
        .launch_template_version()
        .and_then(|v| v.version_number())
        .ok_or_else(|| format!("launch template {name}: no version number in the answer"))?;
    within(
        name,
        ec2.modify_launch_template()
            .launch_template_name(name)
            .default_version(v.to_string())
            .send(),
    )
    .await?
    .map_err(|e| err(&format!("default version of launch template {name}"), e))?;
    Ok(format!("version {v} is the default (was {version})"))
}
