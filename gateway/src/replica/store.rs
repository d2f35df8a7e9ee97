//! The replicas' shared table in DynamoDB: the controller lease and each replica's counters.
//!
//! One table, key `pk` (hash) + `sk` (range), TTL attribute `ttl`:
//! - `pk = "lease#<fleet>"`, `sk = "leader"`: `holder`, `incarnation`, `generation`, `beat`,
//!   `lease_ms`, `expires_ms` (informational): the conditional writes of [`crate::lease`];
//! - `pk = "demand#<fleet>"`, `sk = <replica id>`: its counters ([`ReplicaRow`]), rewritten every
//!   rate window, expiring (TTL) when the replica is gone.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

use crate::control::demand::{Outcomes, ReplicaRow};
use crate::lease::{CallError, Record, Version, Write, Writer};

/// Where the table is and how to reach it.
#[derive(Clone)]
pub struct StoreOptions {
    /// Table name (`--lease-table`).
    pub table: String,
    /// Region.
    pub region: String,
    /// Endpoint override (a local emulator: moto's DynamoDB).
    pub endpoint: Option<String>,
    /// Fleet whose lease and demand rows these are.
    pub fleet: String,
    /// Static credentials (key id, secret) in place of the standard chain: tests against a
    /// local emulator give them here rather than through the process's environment.
    pub credentials: Option<(String, String)>,
}

/// Debug output names the key id, never the secret (the options sit in `ReplicaOptions`, which
/// may be logged).
impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("table", &self.table)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("fleet", &self.fleet)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| (id, "<redacted>")),
            )
            .finish()
    }
}

/// The table.
pub struct Store {
    client: Client,
    table: String,
    lease_pk: String,
    demand_pk: String,
}

/// Over what a replica writes its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No row yet.
    Absent,
    /// The row of this process (its epoch).
    Mine,
    /// The row of an earlier run of this id: its epoch and stamp, as seen unchanged.
    Over(String, u64),
}

/// The lease record from a table item.
fn record(i: &HashMap<String, AttributeValue>) -> Record {
    Record {
        holder: get_s(i, "holder"),
        incarnation: get_s(i, "incarnation"),
        version: Version {
            generation: get_n(i, "generation"),
            beat: get_n(i, "beat"),
            expires_ms: get_n(i, "expires_ms"),
        },
        lease_ms: get_n(i, "lease_ms"),
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn get_s(item: &HashMap<String, AttributeValue>, k: &str) -> String {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// Maps an SDK error: a failed condition is [`CallError::Refused`].
fn map_err<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> CallError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
    {
        return CallError::Refused;
    }
    CallError::Failed(DisplayErrorContext(e).to_string())
}

impl Store {
    /// A client for the table (the standard credentials chain unless the options give static
    /// credentials; one attempt per call: the lease
    /// loop retries on its own schedule, and a call must end well within the lease).
    pub async fn connect(o: &StoreOptions) -> Self {
        let cfg =
            crate::aws_sdk::sdk_config(&o.region, o.endpoint.as_deref(), o.credentials.as_ref(), 1)
                .await;
        let conf = aws_sdk_dynamodb::config::Builder::from(&cfg)
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(1))
                    .operation_timeout(std::time::Duration::from_secs(2))
                    .build(),
            )
            .build();
        Store {
            client: Client::from_conf(conf),
            table: o.table.clone(),
            lease_pk: format!("lease#{}", o.fleet),
            demand_pk: format!("demand#{}", o.fleet),
        }
    }

    /// Whether the table exists (DescribeTable).
    pub async fn table_exists(&self) -> Result<bool, CallError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Creates the table (on demand billing, TTL on `ttl`) when it does not exist.
    pub async fn ensure_table(&self) -> Result<(), CallError> {
        if self.table_exists().await? {
            return Ok(());
        }
        let key = |name: &str, kt: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build()
                .map_err(|e| CallError::Failed(e.to_string()))
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| CallError::Failed(e.to_string()))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // another replica created it first
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) => {}
            Err(e) => return Err(map_err(e)),
        }
        // a new table takes a while to become ACTIVE; TTL can be set only then
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(map_err)?;
            let status = d.table().and_then(|t| t.table_status());
            if status == Some(&aws_sdk_dynamodb::types::TableStatus::Active) {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(CallError::Failed(format!(
                    "table not ACTIVE 60 s after CreateTable (status {status:?})"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .attribute_name("ttl")
            .enabled(true)
            .build()
            .map_err(|e| CallError::Failed(e.to_string()))?;
        // best effort: expired rows are ignored by readers anyway
        let _ = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await;
        Ok(())
    }

    /// Writes the lease record as `who` at wall-clock `wall_ms`, conditional as
    /// [`crate::lease::Table::apply`] is; the record after.
    pub async fn write(&self, who: &Writer, w: Write, wall_ms: u64) -> Result<Record, CallError> {
        let exp = wall_ms + who.lease_ms;
        let mut u = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&self.lease_pk))
            .key("sk", s("leader"))
            .expression_attribute_values(":me", s(&who.id))
            .expression_attribute_values(":inc", s(&who.incarnation))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew);
        let mine = "(holder = :me AND incarnation = :inc)";
        u = match w {
            Write::Acquire(seen) => {
                let cond = match seen {
                    None => format!("attribute_not_exists(pk) OR {mine}"),
                    Some(v) => {
                        u = u
                            .expression_attribute_values(":g", n(v.generation))
                            .expression_attribute_values(":b", n(v.beat))
                            .expression_attribute_values(":e", n(v.expires_ms));
                        // records of earlier releases have no beat: their renewals move expires_ms
                        format!("(generation = :g AND expires_ms = :e AND (attribute_not_exists(beat) OR beat = :b)) OR {mine}")
                    }
                };
                // no TTL on the lease row (one per fleet): a deletion would hand it to anyone
                u.update_expression(
                    "SET holder = :me, incarnation = :inc, generation = if_not_exists(generation, :zero) + :one, beat = if_not_exists(beat, :zero) + :one, expires_ms = :exp, lease_ms = :lease REMOVE #ttl",
                )
                .condition_expression(cond)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":exp", n(exp))
                .expression_attribute_values(":lease", n(who.lease_ms))
            }
            Write::Renew(g) => u
                .update_expression(
                    "SET beat = if_not_exists(beat, :zero) + :one, expires_ms = :exp, lease_ms = :lease",
                )
                .condition_expression(format!("{mine} AND generation = :g"))
                .expression_attribute_values(":g", n(g))
                .expression_attribute_values(":exp", n(exp))
                .expression_attribute_values(":lease", n(who.lease_ms)),
            Write::Release(g) => u
                .update_expression(
                    "SET beat = if_not_exists(beat, :zero) + :one, expires_ms = :zero REMOVE holder, incarnation",
                )
                .condition_expression(format!("{mine} AND generation = :g"))
                .expression_attribute_values(":g", n(g)),
        };
        let out = u.send().await.map_err(map_err)?;
        Ok(out.attributes().map(record).unwrap_or_default())
    }

    /// The lease record (a consistent read), when anyone ever held it.
    pub async fn read(&self) -> Result<Option<Record>, CallError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&self.lease_pk))
            .key("sk", s("leader"))
            .consistent_read(true)
            .send()
            .await
            .map_err(map_err)?;
        Ok(out.item().map(record))
    }

    /// This replica's row as stored: its epoch and publication stamp, when there is one.
    pub async fn own_row(&self, replica: &str) -> Result<Option<(String, u64)>, CallError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&self.demand_pk))
            .key("sk", s(replica))
            .consistent_read(true)
            .send()
            .await
            .map_err(map_err)?;
        Ok(out
            .item()
            .map(|i| (get_s(i, "epoch"), get_n(i, "updated_ms"))))
    }

    /// Writes this replica's row; it expires `ttl_s` seconds after `row.updated_ms`. Written
    /// only over a row of the same epoch (`Claim::Mine`), none (`Claim::Absent`), or the one
    /// seen (`Claim::Over`: a row of an earlier run of this id, unchanged for long enough): a
    /// refusal means another running process uses this replica id.
    pub async fn publish(
        &self,
        row: &ReplicaRow,
        ttl_s: u64,
        claim: &Claim,
    ) -> Result<(), CallError> {
        let (t, w) = (row.totals, row.last_window);
        let p = self.client.put_item();
        let p = match claim {
            Claim::Absent => p.condition_expression("attribute_not_exists(pk)"),
            Claim::Mine => p
                .condition_expression("epoch = :mine")
                .expression_attribute_values(":mine", s(&row.epoch)),
            Claim::Over(epoch, updated_ms) => p
                .condition_expression("epoch = :old AND updated_ms = :u")
                .expression_attribute_values(":old", s(epoch))
                .expression_attribute_values(":u", n(*updated_ms)),
        };
        p.table_name(&self.table)
            .item("pk", s(&self.demand_pk))
            .item("sk", s(&row.replica))
            .item("epoch", s(&row.epoch))
            .item("arrived", n(t.arrived))
            .item("done", n(t.done))
            .item("missed", n(t.missed))
            .item("slow", n(t.slow))
            .item("w_arrived", n(w.arrived))
            .item("w_done", n(w.done))
            .item("w_missed", n(w.missed))
            .item("w_slow", n(w.slow))
            .item("updated_ms", n(row.updated_ms))
            .item("ttl", n(row.updated_ms / 1000 + ttl_s))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Every replica's row (a consistent read).
    pub async fn rows(&self) -> Result<Vec<ReplicaRow>, CallError> {
        let mut rows = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&self.demand_pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(map_err)?;
            for i in out.items() {
                // rows of older builds have no `slow`: 0
                let o = |a: &str, d: &str, m: &str, sl: &str| Outcomes {
                    arrived: get_n(i, a),
                    done: get_n(i, d),
                    missed: get_n(i, m),
                    slow: get_n(i, sl),
                };
                rows.push(ReplicaRow {
                    replica: get_s(i, "sk"),
                    epoch: get_s(i, "epoch"),
                    totals: o("arrived", "done", "missed", "slow"),
                    last_window: o("w_arrived", "w_done", "w_missed", "w_slow"),
                    updated_ms: get_n(i, "updated_ms"),
                });
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() && rows.len() < 10_000 => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_never_shows_the_secret() {
        let o = super::StoreOptions {
            table: "t".into(),
            region: "us-east-1".into(),
            endpoint: None,
            fleet: "f".into(),
            credentials: Some(("AKIDEXAMPLE".into(), "s3cr3t-value".into())),
        };
        let d = format!("{o:?}");
        assert!(d.contains("AKIDEXAMPLE") && d.contains("<redacted>"), "{d}");
        assert!(!d.contains("s3cr3t-value"), "{d}");
    }
}
