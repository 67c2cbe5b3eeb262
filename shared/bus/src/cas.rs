//! Compare-and-set on a KV key that holds on a JetStream cluster: of the writes that expect
//! one revision, exactly one wins.
//!
//! nats-server checks a write's expected revision (`Nats-Expected-Last-Subject-Sequence`) on
//! the stream leader before it proposes the write, against what the leader has applied so
//! far. Two writes expecting the same revision that are in flight together, or that
//! straddle a change of leader, can both be stored (nats-server#4320, #8469). For a lease or
//! a "created once" marker that means two holders, and two replicas writing one customer.
//!
//! The stream still stores them in one order, and of the writes that expected revision `E`
//! the first one stored after `E` is the write a serial server would have accepted. So after
//! its write is stored, a writer reads from the leader the first message on the key after
//! `E`: its own write means it won; another one means it lost, and it puts the winner's
//! value back over its own, so that the key shows the winner's again. The bucket must keep
//! a few revisions of each key ([`CAS_HISTORY`]) so that the winner's write is still there
//! when a loser looks. A bucket with one replica needs none of this: its server checks and
//! stores each write in turn.

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use bytes::Bytes;
use std::time::Duration;

/// Revisions kept per key in buckets written with [`update`]: enough that the first write
/// after a revision is still stored when the last of the replicas racing it reads.
pub const CAS_HISTORY: i64 = 16;

/// How long a writer waits for the leader to show its own stored write (a new leader may
/// still be applying what its predecessor committed).
const SETTLE_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key-value store: {0}")]
pub struct CasError(pub String);

/// Writes `value` to `key` if its last revision is `expected` (0: the key was never
/// written): the new revision when this write won, `None` when another did.
pub async fn update(
    kv: &kv::Store,
    key: &str,
    value: Bytes,
    expected: u64,
) -> Result<Option<u64>, CasError> {
    let revision = match kv.update(key, value, expected).await {
        Ok(revision) => revision,
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => return Ok(None),
        Err(e) => return Err(CasError(e.to_string())),
    };
    if kv.stream.cached_info().config.num_replicas <= 1 {
        // One replica: no proposals, no leader to change; the server checks and stores
        // each write in turn, so its answer is the whole truth.
        return Ok(Some(revision));
    }
    let winner = first_after(kv, key, expected, revision).await?;
    if winner.sequence == revision {
        return Ok(Some(revision));
    }
    tracing::info!(
        key,
        expected,
        revision,
        winner = winner.sequence,
        "Another write expecting the same revision was stored first; giving way to it."
    );
    restore(kv, key, &winner, revision).await;
    Ok(None)
}

/// Creates `key` with `value` if it does not exist or was deleted: the new revision when
/// this write won, `None` when the key exists or another write won.
pub async fn create(kv: &kv::Store, key: &str, value: Bytes) -> Result<Option<u64>, CasError> {
    let expected = match kv.entry(key).await {
        Ok(None) => 0,
        Ok(Some(entry)) if entry.operation == Operation::Put => return Ok(None),
        Ok(Some(deleted)) => deleted.revision,
        Err(e) => return Err(CasError(e.to_string())),
    };
    update(kv, key, value, expected).await
}

/// The first message stored on `key` after revision `expected`, read from the stream's
/// leader once it shows `ours` (everything before `ours` is applied by then).
async fn first_after(
    kv: &kv::Store,
    key: &str,
    expected: u64,
    ours: u64,
) -> Result<StreamMessage, CasError> {
    let subject = format!("{}{key}", kv.prefix);
    let deadline = tokio::time::Instant::now() + SETTLE_PATIENCE;
    let mut pause = Duration::from_millis(10);
    loop {
        let read = kv
            .stream
            .get_first_raw_message_by_subject(&subject, expected + 1)
            .await;
        let not_yet = match read {
            // Before ours: another write won. Ours: we did. After ours (ours already
            // trimmed by later writes): we cannot tell, and a loser is the safe answer.
            Ok(message) => return Ok(message),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => "nothing".into(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() + pause > deadline {
            return Err(CasError(format!(
                "the write of {key} at revision {ours} was stored, but the stream's leader \
                 did not show it within {SETTLE_PATIENCE:?} (last answer: {not_yet})"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Puts the winner's value (or its deletion) back over the losing write at `ours`, unless
/// something was written since.
async fn restore(kv: &kv::Store, key: &str, winner: &StreamMessage, ours: u64) {
    let deleted = winner
        .headers
        .get("KV-Operation")
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
    let restored = if deleted {
        kv.delete_expect_revision(key, Some(ours))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        kv.update(key, winner.payload.clone(), ours)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    if let Err(error) = restored {
        tracing::debug!(key, %error, "Could not put the winning write back; a later write replaced ours.");
    }
}
