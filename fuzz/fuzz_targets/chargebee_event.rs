//! Chargebee event decoding into billing events (what the poller does with each event).
//!
//! Input: a Chargebee event as JSON. Properties: a translated event has an object id, its
//! customer is itself when it is about a customer, its data is the object of its `content`,
//! and it re-encodes to itself (floats to the last bit: see `same_json`).
#![no_main]

use billsync_events::{BillingEvent, ObjectKind};
use billsync_fuzz::same_json;
use billsync_ingest::chargebee::event::to_billing_event;
use billsync_ingest::chargebee::types::ChargebeeEvent;
use libfuzzer_sys::fuzz_target;
use serde_json::to_value;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<ChargebeeEvent>(data) else {
        return;
    };
    let Ok(billing) = to_billing_event("cb-test", &event) else {
        return;
    };
    let v1 = billing.v1();
    assert_eq!(v1.id, event.id);
    assert!(!v1.object_id.is_empty());
    if v1.object == ObjectKind::Customer {
        assert_eq!(v1.customer_id.as_deref(), Some(v1.object_id.as_str()));
    }
    assert!(
        v1.data.is_object(),
        "data is not the event's object: {:?}",
        v1.data
    );
    assert!(event.content.values().any(|v| *v == v1.data));
    let encoded = serde_json::to_vec(&billing).expect("serializes");
    let again: BillingEvent = match serde_json::from_slice(&encoded) {
        Ok(event) => event,
        Err(e) => panic!("a billing event does not read back ({e}): {encoded:?}"),
    };
    let (again, billing) = (
        to_value(&again).expect("a value"),
        to_value(&billing).expect("a value"),
    );
    assert!(
        same_json(&again, &billing),
        "{billing} re-encodes as {again}"
    );
});
