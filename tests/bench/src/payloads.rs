//! The webhooks the benchmark sends: unique `customer.updated` events of about the requested
//! size, shaped like Stripe's, signed with the connection's secret.

use billsync_sandbox::stripe;
use bytes::Bytes;
use serde_json::json;

/// One signed delivery.
pub struct Webhook {
    pub id: String,
    pub body: Bytes,
    pub signature: String,
}

/// `count` unique events of about `size` bytes each, signed at `timestamp`.
pub fn webhooks(count: usize, size: usize, secret: &str, timestamp: i64) -> Vec<Webhook> {
    (0..count)
        .map(|i| {
            let customer_id = stripe::random_id("cus_", 14);
            let mut customer = stripe::customer(
                &customer_id,
                &format!("bench.{i}@example.com"),
                "Bench Mark Customer",
            );
            customer["description"] = json!("Customer created by the billsync ingest benchmark");
            customer["metadata"] = json!({
                "plan": "business",
                "seats": (i % 50).to_string(),
                "crm_owner": "ada.lovelace@example.com",
                "padding": "",
            });
            let mut event = stripe::event("customer.updated", customer);
            event["data"]["previous_attributes"] = json!({"metadata": {"seats": "1"}});
            let bare = serde_json::to_vec(&event)
                .expect("an event serializes")
                .len();
            // Metadata carries the rest, as real customers' often does.
            event["data"]["object"]["metadata"]["padding"] =
                json!("x".repeat(size.saturating_sub(bare)));
            let signed = stripe::signed_webhook(secret, timestamp, &event);
            Webhook {
                id: event["id"].as_str().expect("events have ids").to_string(),
                body: Bytes::from(signed.body),
                signature: signed.signature,
            }
        })
        .collect()
}
