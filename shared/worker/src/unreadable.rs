//! Messages of the events or replay stream that are not a billing event a worker reads: a
//! newer schema published during a rolling upgrade, or a malformed message. Each becomes a
//! failure of its own, carried by a stand-in event, so that nothing is lost unseen and an
//! operator can retry it once a worker reads it.

use billsync_events::{BillingEventV1, ObjectKind, RecordVersion, SourceKind};
use serde::{Deserialize, Serialize};

/// The `event_type` of the stand-in event that carries the failure of a message this worker
/// cannot read (see [`UnreadableMessage`]).
pub(crate) const UNREADABLE_EVENT_TYPE: &str = "billsync.unreadable_message";

/// How much of an unreadable message's payload its failure keeps: enough to see what it
/// was, not a stream's worth of bytes in every failure row.
const UNREADABLE_PAYLOAD_KEPT: usize = 16 * 1024;

/// A message of the events (or replay) stream that is not a billing event this worker can
/// read, as its failure keeps it.
///
/// A failure carries the event it failed on, and an unreadable message has none, so the
/// worker records a stand-in: a `BillingEvent` of type [`UNREADABLE_EVENT_TYPE`] about
/// object `other/unreadable-{stream}-{sequence}` (one failure row per message), whose
/// `data.unreadable` is this. Retrying that failure sends the stand-in back to the worker,
/// which reads the message again from its stream: a worker upgraded meanwhile applies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UnreadableMessage {
    pub(crate) subject: String,
    pub(crate) stream: String,
    pub(crate) stream_sequence: u64,
    /// Why it could not be read.
    pub(crate) error: String,
    /// The payload as text (invalid UTF-8 replaced), cut at [`UNREADABLE_PAYLOAD_KEPT`].
    pub(crate) payload: String,
    pub(crate) payload_bytes: usize,
    pub(crate) payload_truncated: bool,
}

impl UnreadableMessage {
    pub(crate) fn new(
        subject: &str,
        stream: String,
        stream_sequence: u64,
        error: String,
        payload: &[u8],
    ) -> Self {
        let mut kept = UNREADABLE_PAYLOAD_KEPT.min(payload.len());
        // Cut on a character boundary where the payload is UTF-8.
        while kept > 0 && kept < payload.len() && (payload[kept] & 0b1100_0000) == 0b1000_0000 {
            kept -= 1;
        }
        Self {
            subject: subject.to_string(),
            stream,
            stream_sequence,
            error,
            payload: String::from_utf8_lossy(&payload[..kept]).into_owned(),
            payload_bytes: payload.len(),
            payload_truncated: kept < payload.len(),
        }
    }

    /// The message `stand_in` stands for, if it is a stand-in.
    pub(crate) fn of(stand_in: &BillingEventV1) -> Option<UnreadableMessage> {
        if stand_in.event_type != UNREADABLE_EVENT_TYPE || stand_in.object != ObjectKind::Other {
            return None;
        }
        serde_json::from_value(stand_in.data.get("unreadable")?.clone()).ok()
    }

    /// The stand-in event of this message, from source connection `connection`; `id` is
    /// the message's `Nats-Msg-Id` (the source's event id) when it had one.
    pub(crate) fn stand_in(
        &self,
        id: String,
        source: SourceKind,
        connection: &str,
        stream_label: &str,
    ) -> BillingEventV1 {
        BillingEventV1 {
            id: id.clone(),
            source,
            connection: connection.to_string(),
            event_type: UNREADABLE_EVENT_TYPE.to_string(),
            object: ObjectKind::Other,
            object_id: format!("unreadable-{stream_label}-{}", self.stream_sequence),
            customer_id: None,
            // When the worker found it unreadable; the message's own time is in the stream.
            occurred_at: chrono::Utc::now(),
            version: RecordVersion {
                position: 0,
                event_id: id,
                sequence: Some(self.stream_sequence),
            },
            run_id: None,
            data: serde_json::json!({ "unreadable": self }),
            related: serde_json::Value::Null,
        }
    }

    /// What the operator reads in the failure list.
    pub(crate) fn explain(&self) -> String {
        format!(
            "billsync cannot read message {seq} of stream {stream} (subject {subject}): {error}. \
             Nothing was written for it. If a newer billsync published it (a rolling upgrade), \
             run a worker version that reads it, then retry this failure: the worker reads \
             message {seq} from the stream again. Otherwise the message is malformed; its text \
             is in this failure's event (data.unreadable.payload).",
            seq = self.stream_sequence,
            stream = self.stream,
            subject = self.subject,
            error = self.error,
        )
    }

    /// What the operator reads when a retry finds the message gone from its stream.
    pub(crate) fn explain_gone(&self) -> String {
        format!(
            "billsync could not read message {seq} of stream {stream} (subject {subject}: \
             {error}), and a retry found it no longer in the stream (older than \
             nats.retention_days?). Nothing was written for it; its text, as far as billsync \
             kept it, is in this failure's event (data.unreadable.payload). Sync the record \
             again from its source (a backfill), then ignore this failure.",
            seq = self.stream_sequence,
            stream = self.stream,
            subject = self.subject,
            error = self.error,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_payloads_are_kept_whole_or_cut_on_a_character() {
        let small = UnreadableMessage::new("s", "E".into(), 7, "bad".into(), b"{\"schema\":2}");
        assert_eq!(small.payload, "{\"schema\":2}");
        assert!(!small.payload_truncated);

        // 'é' is two bytes; after one ASCII byte the limit falls inside one of them.
        let long = format!("a{}", "é".repeat(UNREADABLE_PAYLOAD_KEPT));
        let cut = UnreadableMessage::new("s", "E".into(), 7, "bad".into(), long.as_bytes());
        assert!(cut.payload_truncated);
        assert_eq!(cut.payload_bytes, long.len());
        assert_eq!(
            cut.payload,
            format!("a{}", "é".repeat((UNREADABLE_PAYLOAD_KEPT - 1) / 2))
        );
        assert!(!cut.payload.contains('\u{fffd}'));

        // The stand-in says which message it stands for.
        let stand_in = cut.stand_in("evt_1".into(), SourceKind::Stripe, "stripe-a", "events");
        assert_eq!(stand_in.record_key(), "other/unreadable-events-7");
        assert_eq!(UnreadableMessage::of(&stand_in), Some(cut));
    }
}
