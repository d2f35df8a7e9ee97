//! What `mark deploy --config FILE` reads: the same file `mark serve --config` runs from (its keys
//! say which function, launch template, table, repository and catalog the gateway will use), plus
//! a `[deploy]` table of what only the deployment needs (roles, AMI, security groups). `mark serve`
//! skips that table; here an unknown key in it exits 64 by name, as in the rest of the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser as _;
use serde::Deserialize;

use crate::app::config_file::{self, DEPLOY_TABLE};
use crate::cli::{Cli, Cmd, ServeArgs};
use crate::control::catalog::Catalog;
use crate::repo::remote::Location;

/// The `[deploy]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployTable {
    /// ARN of the role the Lambda function runs as (with `lambda_function`).
    pub lambda_role: Option<String>,
    /// Seconds an invocation may run (Lambda's timeout, 1 to 900).
    #[serde(default = "default_timeout")]
    pub lambda_timeout_s: u32,
    /// The workers' AMI (stock Amazon Linux 2023 or Debian); else `ec2_image_id`.
    pub image_id: Option<String>,
    /// The workers' instance profile, by name or ARN (its role reads the bucket).
    pub instance_profile: Option<String>,
    /// Security groups of the workers (they must let the gateway reach `worker_port`).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Concurrent executions reserved for the function: default the catalog's `[lambda]
    /// concurrency_limit` (capped to what the account can give); 0 reserves none.
    pub reserved_concurrency: Option<u32>,
    /// The `mark` binary to ship (default: this one). A build with debug info can pass
    /// Lambda's limit: ship a stripped copy (`strip -o mark.ship target/release/mark`).
    pub mark_binary: Option<PathBuf>,
}

fn default_timeout() -> u32 {
    30
}

impl Default for DeployTable {
    fn default() -> Self {
        DeployTable {
            lambda_role: None,
            lambda_timeout_s: default_timeout(),
            image_id: None,
            instance_profile: None,
            security_groups: Vec::new(),
            reserved_concurrency: None,
            mark_binary: None,
        }
    }
}

/// Everything `mark deploy` works from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file.
    pub file: PathBuf,
    /// `mark serve`'s flags from the file (and the environment).
    pub serve: ServeArgs,
    /// The `[deploy]` table.
    pub deploy: DeployTable,
    /// The repository's bucket.
    pub bucket: String,
    /// The repository's prefix.
    pub prefix: String,
    /// The catalog, when the file names one.
    pub catalog: Option<Catalog>,
}

impl Settings {
    /// The function's name (an ARN's last part).
    pub fn function_name(&self) -> Option<String> {
        self.serve.control.lambda_function.as_ref().map(|f| {
            f.rsplit_once("function:")
                .map_or(f.as_str(), |(_, n)| n)
                .split(':')
                .next()
                .unwrap_or(f)
                .to_string()
        })
    }

    /// The launch template's name (`ec2_launch_template` without a version), with `--cloud ec2`.
    pub fn template_name(&self) -> Option<String> {
        let c = &self.serve.control;
        (c.cloud.as_deref() == Some("ec2")).then(|| {
            c.ec2_launch_template.as_ref().map_or_else(
                || format!("{}-workers", c.fleet),
                |t| t.split(':').next().unwrap_or(t).to_string(),
            )
        })
    }

    /// The workers' AMI.
    pub fn image_id(&self) -> Option<&str> {
        self.deploy
            .image_id
            .as_deref()
            .or(self.serve.control.ec2_image_id.as_deref())
    }
}

/// Reads and checks `file`.
pub fn read(file: &Path) -> Result<Settings, String> {
    let shown = file.display();
    let flags = config_file::file_flags(file, &|n| std::env::var_os(n).is_some(), &[])?;
    let mut argv: Vec<OsString> = vec!["mark".into(), "serve".into()];
    argv.extend(flags);
    let cli = Cli::try_parse_from(argv).map_err(|e| format!("--config {shown}: {e}"))?;
    let Cmd::Serve(serve) = cli.cmd else {
        return Err(format!("--config {shown}: not the flags of mark serve"));
    };
    let table = config_file::read_table(file)?;
    let deploy: DeployTable = match table.get(DEPLOY_TABLE) {
        None => DeployTable::default(),
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e| format!("--config {shown}: [{DEPLOY_TABLE}]: {e}"))?,
    };
    let repo = serve.model_repo.to_string_lossy().to_string();
    let (bucket, prefix) = match Location::parse(&repo)? {
        Location::S3 { bucket, prefix } => (bucket, prefix),
        Location::Local(_) => {
            return Err(format!(
                "--config {shown}: model_repo = {repo:?}: a deployment serves from S3 \
                 (push the models first: mark repo push DIR s3://bucket/prefix)"
            ))
        }
    };
    let catalog = match &serve.control.catalog {
        None => None,
        Some(p) => Some(Catalog::load(p).map_err(|e| format!("--config {shown}: catalog: {e}"))?),
    };
    let s = Settings {
        file: file.to_path_buf(),
        serve,
        deploy,
        bucket,
        prefix,
        catalog,
    };
    check(&s).map_err(|e| format!("--config {shown}: {e}"))?;
    Ok(s)
}

fn check(s: &Settings) -> Result<(), String> {
    let c = &s.serve.control;
    if s.function_name().is_none() && s.template_name().is_none() && c.replica.lease_table.is_none()
    {
        return Err(
            "nothing to deploy: the file names no lambda_function, no cloud = \"ec2\" \
                    fleet and no lease_table"
                .into(),
        );
    }
    if s.function_name().is_some() {
        if s.deploy.lambda_role.is_none() {
            return Err("lambda_function needs [deploy] lambda_role (the role's ARN)".into());
        }
        if s.catalog.as_ref().and_then(|c| c.lambda.as_ref()).is_none() {
            return Err(
                "lambda_function needs a catalog with a [lambda] section (memory, concurrency)"
                    .into(),
            );
        }
        if !(1..=900).contains(&s.deploy.lambda_timeout_s) {
            return Err(format!(
                "[deploy] lambda_timeout_s = {}: Lambda allows 1 to 900",
                s.deploy.lambda_timeout_s
            ));
        }
    }
    // what is deployed is what the gateway uses: the template's default version, the function's
    // $LATEST (a pinned version or alias would go on running the old code)
    if let Some(t) = &c.ec2_launch_template {
        if t.split_once(':').is_some_and(|(_, v)| v != "$Default") {
            return Err(format!(
                "ec2_launch_template = {t:?}: mark deploy makes a new default version; name the \
                 template without a version"
            ));
        }
    }
    if let Some(f) = &c.lambda_function {
        let after = f.rsplit_once("function:").map(|(_, n)| n);
        if after.is_some_and(|n| n.contains(':')) {
            return Err(format!(
                "lambda_function = {f:?}: mark deploy updates $LATEST; name the function \
                 without a version or alias"
            ));
        }
    }
    if s.template_name().is_some() {
        crate::cloud::ec2::check_fleet_name(&c.fleet)?;
        if s.image_id().is_none() {
            return Err(
                "cloud = \"ec2\" needs [deploy] image_id (or ec2_image_id): a stock \
                        Amazon Linux 2023 or Debian AMI"
                    .into(),
            );
        }
    }
    Ok(())
}
