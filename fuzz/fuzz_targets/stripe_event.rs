//! Stripe event decoding into billing events (what the webhook does after verifying).
//!
//! Input: a Stripe event as JSON. Properties: the message the webhook publishes reads back
//! as the billing event [`to_billing_event`] builds, and a billing event re-encodes to
//! itself (floats to the last bit: see `same_json`).
#![no_main]

use billsync_events::BillingEvent;
use billsync_fuzz::same_json;
use billsync_ingest::stripe::event::{encode, to_billing_event, StripeEvent};
use libfuzzer_sys::fuzz_target;
use serde_json::to_value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = serde_json::from_str::<StripeEvent>(text) else {
        return;
    };
    let encoded = encode("acme", &event);
    let typed = to_billing_event("acme", &event);
    let (encoded, typed) = match (encoded, typed) {
        (Ok(encoded), Ok(typed)) => (encoded, typed),
        (Err(_), Err(_)) => return,
        (encoded, typed) => panic!(
            "encode and to_billing_event disagree: {:?} vs {:?}",
            encoded.map(|e| e.payload),
            typed
        ),
    };
    let published: BillingEvent = match serde_json::from_slice(&encoded.payload) {
        Ok(event) => event,
        Err(e) => panic!(
            "the published message is not a billing event ({e}): {:?}",
            encoded.payload
        ),
    };
    assert_eq!(published, typed);
    assert_eq!(encoded.envelope.id, typed.v1().id);
    assert_eq!(encoded.envelope.object_id, typed.v1().object_id);
    let again: BillingEvent =
        serde_json::from_slice(&serde_json::to_vec(&typed).expect("serializes")).expect("reads");
    let (again, typed) = (
        to_value(&again).expect("a value"),
        to_value(&typed).expect("a value"),
    );
    assert!(same_json(&again, &typed), "{typed} re-encodes as {again}");
});
