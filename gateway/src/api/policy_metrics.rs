//! The policy slots in the `/metrics` exposition: per kind, calls by outcome, swaps, rollbacks,
//! and the shadows' offers and differences (the host crate knows no Prometheus).

use prometheus_client::encoding::DescriptorEncoder;

/// The policy slots and their shadows in the `/metrics` exposition.
impl crate::metrics::exposition::Encode for crate::policy::slot::PolicySlots {
    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        use crate::metrics::exposition::{counter, gauge};
        let statuses = crate::policy::PolicyKind::ALL.map(|k| (k, self.get(k).status()));
        let reports = crate::policy::PolicyKind::ALL
            .map(|k| (k, self.get(k).shadow.load_full().map(|s| s.report())));
        let kind = |k: &crate::policy::PolicyKind| vec![("kind", k.to_string())];
        type Live = fn(&crate::policy::slot::SlotStatus) -> u64;
        let live: [(&str, &str, Live); 4] = [
            (
                "mark_policy_calls_total",
                "Calls of the live policy in each slot (WASM or native default).",
                |s| s.calls,
            ),
            (
                "mark_policy_failures_total",
                "Live policy calls that trapped or timed out.",
                |s| s.failures,
            ),
            (
                "mark_policy_fallbacks_total",
                "Live policy calls answered by the native default instead.",
                |s| s.fallbacks,
            ),
            (
                "mark_policy_rollbacks_total",
                "Automatic rollbacks of a slot after repeated failures.",
                |s| s.auto_rollbacks,
            ),
        ];
        for (name, help, f) in live {
            counter(
                enc,
                name,
                help,
                statuses.iter().map(|(k, s)| (kind(k), f(s))),
            )?;
        }
        gauge(
            enc,
            "mark_policy_shadow_active",
            "A candidate runs in shadow in the slot (1) or not (0).",
            reports
                .iter()
                .map(|(k, r)| (kind(k), f64::from(u8::from(r.is_some())))),
        )?;
        type Sh = fn(&crate::policy::shadow_report::ShadowReport) -> u64;
        let shadow: [(&str, &str, Sh); 5] = [
            (
                "mark_policy_shadow_calls_total",
                "Calls made to the shadow candidate.",
                |r| r.head.calls,
            ),
            (
                "mark_policy_shadow_agreements_total",
                "Shadow answers equal to the live policy's.",
                |r| r.agreements,
            ),
            (
                "mark_policy_shadow_disagreements_total",
                "Shadow answers that differ from the live policy's.",
                |r| r.disagreements,
            ),
            (
                "mark_policy_shadow_failures_total",
                "Shadow calls that trapped or timed out.",
                |r| r.head.failures,
            ),
            (
                "mark_policy_shadow_skipped_total",
                "Live calls not offered to the shadow: its queue was full.",
                |r| r.head.skipped,
            ),
        ];
        for (name, help, f) in shadow {
            let samples = reports
                .iter()
                .filter_map(|(k, r)| r.as_ref().map(|r| (kind(k), f(r))));
            counter(enc, name, help, samples)?;
        }
        Ok(())
    }
}
