//! The live loop's own helpers (billing facts of an instance).

use super::*;
use mark_policies::types::Market;

#[test]
fn instances_are_billed_under_their_type_and_market() {
    let i = Instance {
        id: "i-1".into(),
        fleet: "f".into(),
        model: "m".into(),
        instance_type: "c5.large".into(),
        market: Market::Spot,
        launched_at: 10.0,
        addr: String::new(),
        state: InstanceState::Running,
        price_per_hour: 0.05,
        zone: String::new(),
    };
    let b = billed(&i);
    assert_eq!(b.backend, "c5.large/spot");
    assert_eq!((b.id, b.launched_at, b.ended_at), ("i-1", 10.0, None));
}
