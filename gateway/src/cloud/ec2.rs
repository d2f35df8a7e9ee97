//! The `ec2` cloud driver, through `aws-sdk-ec2`: RunInstances (on-demand, or spot through
//! InstanceMarketOptions) with user data that starts `mark worker`, tags that identify the fleet,
//! DescribeInstances to rebuild the fleet from those tags (state and private IP),
//! TerminateInstances, and spot interruptions noticed from the state reason.
//! Credentials and endpoint come from the standard AWS chain, overridable for emulators.

use aws_sdk_ec2::types::{
    Filter, InstanceMarketOptionsRequest, InstanceStateName, LaunchTemplateSpecification,
    MarketType, ResourceType, Tag, TagSpecification,
};
use mark_policies::types::Market;

use super::CloudError;
use crate::control::catalog::Catalog;
use crate::control::fleet::{Instance, InstanceState};

/// How to reach EC2 and what to launch.
#[derive(Debug, Clone)]
pub struct Ec2Options {
    /// Region.
    pub region: String,
    /// Endpoint override (an emulator such as moto); `None` for AWS.
    pub endpoint: Option<String>,
    /// Static credentials (access key, secret); `None` for the standard chain.
    pub credentials: Option<(String, String)>,
    /// AMI with `mark` and the models installed (see docs/operations.md); empty when the launch
    /// template names it.
    pub image_id: String,
    /// Launch template `NAME[:VERSION]` (AMI, security groups, instance profile, IMDSv2, ...);
    /// RunInstances' own parameters (type, market, tags, user data, subnet) override it.
    pub launch_template: Option<String>,
    /// Subnets to launch into, tried in turn when one has no capacity for the type
    /// (`InsufficientInstanceCapacity`, `Unsupported`); empty: the default VPC's choice.
    pub subnets: Vec<String>,
    /// Fleet name (tag `mark:fleet`).
    pub fleet: String,
    /// Model (tag `mark:model`).
    pub model: String,
    /// Port the workers listen on.
    pub worker_port: u16,
    /// Attempts per API call (1 = no retries; tests against emulators use 1).
    pub max_attempts: u32,
    /// Instances per DescribeInstances page (5..=1000; AWS's largest is 1000).
    pub page_size: i32,
    /// Route to the address in each instance's `mark:addr` tag instead of its private IP: for
    /// tests against an emulator, whose instances have invented addresses that must never be
    /// contacted (an instance without the tag is never routed to).
    pub addr_from_tag: bool,
    /// The repository the workers serve: the gateway's `s3://` URL (they fetch and verify it
    /// at boot, so a push reaches new workers without a new image), or `None` for the AMI's
    /// own `/opt/mark/models`.
    pub worker_repo: Option<String>,
    /// The launch template's user data boots the workers (`mark deploy` writes it): none is
    /// sent with RunInstances, which would replace it.
    pub template_user_data: bool,
}

/// The availability zone EC2 placed `i` in (empty when it says none).
fn zone_of(i: &aws_sdk_ec2::types::Instance) -> String {
    i.placement()
        .and_then(|p| p.availability_zone())
        .unwrap_or_default()
        .to_string()
}

/// Port the workers listen on (the user data starts them on it; the gateway routes to it).
pub const WORKER_PORT: u16 = 8000;

/// Pages of DescribeInstances read before the fleet is called unknown.
const MAX_PAGES: usize = 100;

/// EC2's limit on a `ClientToken`.
const TOKEN_MAX: usize = 64;

/// The `ClientToken` of the launch `key` in `fleet`: `<fleet>-<key>` when it fits EC2's 64
/// characters, else the fleet and a 64-bit FNV-1a hash of the key (never a cut key: two keys
/// that differ only past the cut would collapse into one launch).
pub fn client_token(fleet: &str, key: &str) -> String {
    let plain = format!("{fleet}-{key}");
    if plain.len() <= TOKEN_MAX && plain.is_ascii() {
        return plain;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let fleet: String = fleet
        .chars()
        .filter(char::is_ascii)
        .take(TOKEN_MAX - 18)
        .collect();
    format!("{fleet}-h{h:016x}")
}

/// A fleet name the tags, launch keys and client tokens can carry: 1 to 32 of `[A-Za-z0-9_-]`.
pub fn check_fleet_name(fleet: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&fleet.len())
        && fleet
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--fleet {fleet:?}: 1 to 32 letters, digits, '-' or '_'"
        ))
    }
}

/// The EC2 driver.
pub struct Ec2Cloud {
    client: aws_sdk_ec2::Client,
    opts: Ec2Options,
    catalog: Catalog,
}

/// StateReason code of a reclaimed spot instance.
pub const SPOT_TERMINATION: &str = "Server.SpotInstanceTermination";

/// Standard base64 (the `base64` crate), as EC2 wants user data.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The user data a worker instance boots with: start `mark worker` on `repo` (the gateway's
/// `s3://` URL, fetched and verified at boot) or the AMI's own `models`, with the gateway–worker
/// secret from `/etc/mark/worker-secret` when the image or the launch template puts it there
/// (never in the user data itself: anyone who can describe the instance reads that).
pub fn user_data(port: u16, repo: Option<&str>) -> String {
    // single-quoted for the shell: a quote in the URL cannot end the word
    let repo = repo.map_or_else(
        || "models".to_string(),
        |r| format!("'{}'", r.replace('\'', "'\\''")),
    );
    format!(
        "#!/bin/bash\n# MArk-rs worker: the AMI carries /opt/mark (binary, .mark/venv; models unless fetched from S3)\ncd /opt/mark\n# the gateway-worker secret, when the image or the launch template provides it\n[ -r /etc/mark/worker-secret ] && export MARK_WORKER_SECRET_FILE=/etc/mark/worker-secret\nexec ./mark worker --model-repo {repo} --listen 0.0.0.0:{port} --imds-endpoint http://169.254.169.254 >>/var/log/mark-worker.log 2>&1\n"
    )
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

fn err(e: impl std::fmt::Display) -> CloudError {
    CloudError::Failed(e.to_string())
}

impl Ec2Options {
    /// The SDK configuration of these options (region, endpoint, credentials, attempts).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::aws_sdk::sdk_config(
            &self.region,
            self.endpoint.as_deref(),
            self.credentials.as_ref(),
            self.max_attempts,
        )
        .await
    }
}

impl Ec2Cloud {
    /// Connects with `opts`.
    pub async fn connect(opts: Ec2Options, catalog: Catalog) -> Self {
        let conf = opts.sdk_config().await;
        Ec2Cloud {
            client: aws_sdk_ec2::Client::new(&conf),
            opts,
            catalog,
        }
    }

    /// Launches one instance of `instance_type` in `market`, tagged with fleet, model, market and
    /// launch time.
    pub async fn launch(
        &self,
        instance_type: &str,
        market: Market,
    ) -> Result<Instance, CloudError> {
        self.launch_keyed(instance_type, market, None).await
    }

    /// Launches one instance under the launch `key` (tag `mark:plan`; `autoscale::keyed`):
    /// its `ClientToken` is built from the fleet and the key alone ([`client_token`]), so EC2
    /// launches it once however many controllers (or retries) ask for it.
    pub async fn launch_keyed(
        &self,
        instance_type: &str,
        market: Market,
        key: Option<&str>,
    ) -> Result<Instance, CloudError> {
        let spec = self
            .catalog
            .get(instance_type)
            .ok_or_else(|| CloudError::UnknownType(instance_type.into()))?;
        let now = crate::clock::wall_s();
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(tag("mark:fleet", &self.opts.fleet))
            .tags(tag("mark:model", &self.opts.model))
            .tags(tag("mark:market", market.as_str()))
            .tags(tag("mark:launched-at", &format!("{now:.3}")))
            .tags(tag("mark:plan", key.unwrap_or("")))
            .build();
        let mut req = self
            .client
            .run_instances()
            .instance_type(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags);
        if !self.opts.template_user_data {
            req = req.user_data(base64(
                user_data(self.opts.worker_port, self.opts.worker_repo.as_deref()).as_bytes(),
            ));
        }
        if !self.opts.image_id.is_empty() {
            req = req.image_id(&self.opts.image_id);
        }
        if let Some(t) = &self.opts.launch_template {
            let (name, version) = t.split_once(':').unwrap_or((t, "$Default"));
            req = req.launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(name)
                    .version(version)
                    .build(),
            );
        }
        if market == Market::Spot {
            req = req.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .build(),
            );
        }
        // each subnet in turn while the type has no capacity there (spread: start at a different
        // one per launch); a launch asked again retries the same subnets under the same tokens
        let subnets: Vec<Option<&str>> = if self.opts.subnets.is_empty() {
            vec![None]
        } else {
            let n = self.opts.subnets.len();
            let start = key.map_or(0, |k| k.bytes().map(usize::from).sum::<usize>() % n);
            (0..n)
                .map(|j| Some(self.opts.subnets[(start + j) % n].as_str()))
                .collect()
        };
        let mut last = None;
        let mut out = None;
        for (j, subnet) in subnets.iter().enumerate() {
            let mut r = req.clone().set_subnet_id(subnet.map(str::to_string));
            if let Some(k) = key {
                let k = if j == 0 {
                    k.to_string()
                } else {
                    format!("{k}-s{j}")
                };
                r = r.client_token(client_token(&self.opts.fleet, &k));
            }
            match r.send().await {
                Ok(o) => {
                    out = Some(o);
                    break;
                }
                Err(e) => {
                    use aws_sdk_ec2::error::ProvideErrorMetadata;
                    let capacity = matches!(
                        e.code(),
                        Some("InsufficientInstanceCapacity" | "Unsupported")
                    );
                    let msg = format!(
                        "{}{}",
                        subnet.map_or(String::new(), |s| format!("subnet {s}: ")),
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    );
                    if !capacity {
                        return Err(err(msg));
                    }
                    tracing::warn!(cause = %msg, r#type = instance_type, "no capacity; trying the next subnet");
                    last = Some(msg);
                }
            }
        }
        let Some(out) = out else {
            return Err(err(
                last.unwrap_or_else(|| "no subnet to launch into".into())
            ));
        };
        let i = out
            .instances()
            .first()
            .ok_or_else(|| err("RunInstances returned no instance"))?;
        let price = spec.price(market);
        Ok(Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            fleet: self.opts.fleet.clone(),
            model: self.opts.model.clone(),
            instance_type: instance_type.into(),
            market,
            launched_at: now,
            addr: if self.opts.addr_from_tag {
                String::new()
            } else {
                i.private_ip_address()
                    .map(|ip| format!("{ip}:{}", self.opts.worker_port))
                    .unwrap_or_default()
            },
            state: InstanceState::Pending,
            price_per_hour: price,
            zone: zone_of(i),
        })
    }

    /// The fleet's instances (this fleet and model) in `states`, every page of them.
    async fn describe(
        &self,
        states: &[&str],
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>, CloudError> {
        let mut filter = Filter::builder().name("instance-state-name");
        for s in states {
            filter = filter.values(*s);
        }
        let req = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:mark:fleet")
                    .values(&self.opts.fleet)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("tag:mark:model")
                    .values(&self.opts.model)
                    .build(),
            )
            .filters(filter.build())
            .max_results(self.opts.page_size.clamp(5, 1000));
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        // a fleet larger than a page is listed whole: a partial list would look smaller and
        // launch past --max-instances, and leave the rest unbilled, unrouted, never terminated
        for _ in 0..MAX_PAGES {
            let out = req
                .clone()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| err(aws_sdk_ec2::error::DisplayErrorContext(e)))?;
            all.extend(
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances().iter().cloned()),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(all),
            }
        }
        Err(err(format!(
            "DescribeInstances: more than {MAX_PAGES} pages; the fleet is unknown"
        )))
    }

    /// The fleet, rebuilt from the tags of pending and running instances.
    pub async fn list(&self) -> Result<Vec<Instance>, CloudError> {
        let mut out = Vec::new();
        let now = crate::clock::wall_s();
        for i in self.describe(&["pending", "running"]).await? {
            let get = |k: &str| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .map(str::to_string)
            };
            let ty = i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            let market = match (
                get("mark:market").as_deref(),
                i.instance_lifecycle().map(|l| l.as_str()),
            ) {
                (Some("spot"), _) | (_, Some("spot")) => Market::Spot,
                _ => Market::OnDemand,
            };
            let price = self.catalog.get(&ty).map_or(0.0, |s| s.price(market));
            out.push(Instance {
                id: i.instance_id().unwrap_or_default().to_string(),
                fleet: self.opts.fleet.clone(),
                model: get("mark:model").unwrap_or_default(),
                instance_type: ty,
                market,
                // EC2's own launch time: a tag can be missing, unparsable or skewed (it was
                // written by whichever replica launched it); never 1970 (billed for 56 years)
                launched_at: i
                    .launch_time()
                    .map(|t| t.as_secs_f64())
                    .or_else(|| get("mark:launched-at").and_then(|v| v.parse().ok()))
                    .filter(|t: &f64| t.is_finite() && *t > 0.0 && *t <= now + 300.0)
                    .unwrap_or(now),
                addr: if self.opts.addr_from_tag {
                    get("mark:addr").unwrap_or_default()
                } else {
                    i.private_ip_address()
                        .map(|ip| format!("{ip}:{}", self.opts.worker_port))
                        .unwrap_or_default()
                },
                state: if i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running) {
                    InstanceState::Running
                } else {
                    InstanceState::Pending
                },
                price_per_hour: price,
                zone: zone_of(&i),
            });
        }
        out.sort_by(|a, b| {
            a.launched_at
                .total_cmp(&b.launched_at)
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Instances of the fleet that the cloud reclaimed (spot interruption), by id.
    pub async fn interrupted(&self) -> Result<Vec<String>, CloudError> {
        Ok(self
            .describe(&["shutting-down", "terminated"])
            .await?
            .into_iter()
            .filter(|i| i.state_reason().and_then(|r| r.code()) == Some(SPOT_TERMINATION))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }

    /// Terminates `id`.
    pub async fn terminate(&self, id: &str) -> Result<(), CloudError> {
        self.client
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| err(aws_sdk_ec2::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{base64, check_fleet_name, client_token};

    #[test]
    fn workers_boot_on_the_gateways_s3_repository_quoted_for_the_shell() {
        let u = super::user_data(8000, Some("s3://models/prod'; rm -rf /"));
        assert!(
            u.contains("--model-repo 's3://models/prod'\\''; rm -rf /' --listen"),
            "{u}"
        );
        assert!(super::user_data(8000, None).contains("--model-repo models --listen"));
    }

    #[test]
    fn client_tokens_fit_ec2_and_never_collapse_two_keys() {
        assert_eq!(
            client_token("prod", "g5-c5.large-spot-1"),
            "prod-g5-c5.large-spot-1"
        );
        let long = "x".repeat(32);
        let a = client_token(&long, "g28401234-c7i.48xlarge-on-demand-10");
        let b = client_token(&long, "g28401234-c7i.48xlarge-on-demand-11");
        assert!(a.len() <= 64 && b.len() <= 64, "{a} {b}");
        assert_ne!(a, b, "keys that differ only at the end stay apart");
        assert_eq!(
            a,
            client_token(&long, "g28401234-c7i.48xlarge-on-demand-10")
        );
    }

    #[test]
    fn fleet_names_are_checked() {
        assert!(check_fleet_name("prod-resnet_1").is_ok());
        for bad in ["", "a b", "x/y", &"y".repeat(33), "ünï"] {
            assert!(check_fleet_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
