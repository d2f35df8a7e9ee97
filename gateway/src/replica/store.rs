//! The replicas' shared table in DynamoDB: the controller lease and each replica's counters.
//!
//! One table, key `pk` (hash) + `sk` (range), TTL attribute `ttl`:
//! - `pk = "lease#<fleet>"`, `sk = "leader"`: `holder`, `expires_ms`, `generation`. Taken with a
//!   conditional write (absent, or expired) that bumps `generation`, renewed with one that
//!   requires the same holder and generation, as the AWS DynamoDB lock client does;
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

/// Where the table is and how to reach it.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Table name (`--lease-table`).
    pub table: String,
    /// Region.
    pub region: String,
    /// Endpoint override (a local emulator: moto's DynamoDB).
    pub endpoint: Option<String>,
    /// Fleet whose lease and demand rows these are.
    pub fleet: String,
}

/// The table.
pub struct Store {
    client: Client,
    table: String,
    lease_pk: String,
    demand_pk: String,
}

/// A failed call, or a condition that did not hold (someone else holds the lease).
#[derive(Debug)]
pub enum StoreError {
    /// The conditional write did not apply.
    Refused,
    /// The call failed (network, throttling, table missing...).
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Refused => f.write_str("condition not met"),
            StoreError::Failed(e) => f.write_str(e),
        }
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

/// Maps an SDK error: a failed condition is [`StoreError::Refused`].
fn map_err<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
    {
        return StoreError::Refused;
    }
    StoreError::Failed(DisplayErrorContext(e).to_string())
}

impl Store {
    /// A client for the table (the standard credentials chain; one attempt per call: the lease
    /// loop retries on its own schedule, and a call must end well within the lease).
    pub async fn connect(o: &StoreOptions) -> Self {
        let cfg = crate::aws_sdk::sdk_config(&o.region, o.endpoint.as_deref(), None, 1).await;
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

    /// Creates the table (on demand billing, TTL on `ttl`) when it does not exist.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(_) => return Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) => {}
            Err(e) => return Err(map_err(e)),
        }
        let key = |name: &str, kt: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build()
                .map_err(|e| StoreError::Failed(e.to_string()))
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Failed(e.to_string()))
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
        let ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .attribute_name("ttl")
            .enabled(true)
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
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

    /// Takes the lease for `me` when nobody holds it or it expired before `now_ms`; returns the
    /// new generation.
    pub async fn acquire(&self, me: &str, now_ms: u64, lease_ms: u64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&self.lease_pk))
            .key("sk", s("leader"))
            .update_expression(
                "SET holder = :me, expires_ms = :exp, generation = if_not_exists(generation, :zero) + :one, #ttl = :ttl",
            )
            .condition_expression("attribute_not_exists(pk) OR expires_ms < :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":exp", n(now_ms + lease_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n((now_ms + lease_ms) / 1000 + 3600))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(map_err)?;
        Ok(out.attributes().map_or(0, |a| get_n(a, "generation")))
    }

    /// Extends the lease `me` holds at `generation`.
    pub async fn renew(
        &self,
        me: &str,
        generation: u64,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&self.lease_pk))
            .key("sk", s("leader"))
            .update_expression("SET expires_ms = :exp, #ttl = :ttl")
            .condition_expression("holder = :me AND generation = :g")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":g", n(generation))
            .expression_attribute_values(":exp", n(now_ms + lease_ms))
            .expression_attribute_values(":ttl", n((now_ms + lease_ms) / 1000 + 3600))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Gives the lease up (it expires at once) if `me` still holds it at `generation`.
    pub async fn release(&self, me: &str, generation: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&self.lease_pk))
            .key("sk", s("leader"))
            .update_expression("SET expires_ms = :zero")
            .condition_expression("holder = :me AND generation = :g")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":g", n(generation))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Who holds the lease: holder, expiry (wall-clock ms) and generation, when anyone ever did.
    pub async fn holder(&self) -> Result<Option<(String, u64, u64)>, StoreError> {
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
        Ok(out.item().map(|i| {
            (
                get_s(i, "holder"),
                get_n(i, "expires_ms"),
                get_n(i, "generation"),
            )
        }))
    }

    /// Writes this replica's row; it expires `ttl_s` seconds after `row.updated_ms`.
    pub async fn publish(&self, row: &ReplicaRow, ttl_s: u64) -> Result<(), StoreError> {
        let (t, w) = (row.totals, row.last_window);
        self.client
            .put_item()
            .table_name(&self.table)
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
    pub async fn rows(&self) -> Result<Vec<ReplicaRow>, StoreError> {
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
