//! Groups the writes of concurrent deliveries into one bulk call, for CRMs with bulk
//! endpoints (Zoho's upsert of up to 100 records).
//!
//! Each delivery submits its record under a group key (a module, its duplicate check) and
//! waits for its own result. A group is flushed when it holds `max_items`, or `max_wait`
//! after its first record arrived, whichever comes first, so a lone event waits at most
//! `max_wait` while a backlog fills whole calls. The sink answers one result per record, in
//! order; a failure of the whole call (429, a timeout) is every record's, so each event is
//! retried by the runtime as it would be after its own call.

use crate::destination::DeliveryError;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::Instrument;

/// Where a batch goes: one bulk call for records of one group.
pub trait BatchSink: Send + Sync + 'static {
    /// Records of one key go into one call (e.g. the module written).
    type Key: Eq + Hash + Clone + Send + Sync + 'static;
    type Item: Send + 'static;
    type Output: Send + 'static;

    /// Writes `items` in one call: one result per item, in order; `Err` when the whole call
    /// failed.
    fn flush(
        &self,
        key: &Self::Key,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Result<Vec<Result<Self::Output, DeliveryError>>, DeliveryError>> + Send;
}

type Reply<S> = oneshot::Sender<Result<<S as BatchSink>::Output, DeliveryError>>;

struct Group<S: BatchSink> {
    /// Which group this is, so a timer never flushes the group that followed it.
    serial: u64,
    /// Each record with its caller's reply and span (the event it belongs to).
    items: Vec<(S::Item, Reply<S>, tracing::Span)>,
}

/// A batcher in front of one sink; cheap to clone, shared by a connection's deliveries.
pub struct Batcher<S: BatchSink> {
    inner: Arc<Inner<S>>,
}

impl<S: BatchSink> Clone for Batcher<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S: BatchSink> {
    sink: S,
    max_items: usize,
    max_wait: Duration,
    open: Mutex<Open<S>>,
}

struct Open<S: BatchSink> {
    next_serial: u64,
    groups: HashMap<S::Key, Group<S>>,
}

impl<S: BatchSink> Batcher<S> {
    /// Flushes a group at `max_items` records or `max_wait` after its first.
    pub fn new(sink: S, max_items: usize, max_wait: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                sink,
                max_items: max_items.max(1),
                max_wait,
                open: Mutex::new(Open {
                    next_serial: 0,
                    groups: HashMap::new(),
                }),
            }),
        }
    }

    pub fn sink(&self) -> &S {
        &self.inner.sink
    }

    /// Adds `item` to its group's next call and waits for its own result.
    pub async fn submit(&self, key: S::Key, item: S::Item) -> Result<S::Output, DeliveryError> {
        let (reply, answer) = oneshot::channel();
        let (full, timer) = {
            let mut open = self
                .inner
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let serial = open.next_serial;
            let mut started = None;
            let group = open.groups.entry(key.clone()).or_insert_with(|| {
                started = Some(serial);
                Group {
                    serial,
                    items: Vec::new(),
                }
            });
            group.items.push((item, reply, tracing::Span::current()));
            let full = (group.items.len() >= self.inner.max_items)
                .then(|| open.groups.remove(&key))
                .flatten();
            if started.is_some() {
                open.next_serial += 1;
            }
            let timer = started.filter(|_| full.is_none());
            (full, timer)
        };
        if let Some(group) = full {
            tokio::spawn(Arc::clone(&self.inner).flush(key, group.items));
        } else if let Some(serial) = timer {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                tokio::time::sleep(inner.max_wait).await;
                let due = {
                    let mut open = inner.open.lock().unwrap_or_else(PoisonError::into_inner);
                    match open.groups.get(&key) {
                        Some(group) if group.serial == serial => open.groups.remove(&key),
                        _ => None,
                    }
                };
                if let Some(group) = due {
                    inner.flush(key, group.items).await;
                }
            });
        }
        answer.await.unwrap_or_else(|_| {
            Err(DeliveryError::Retryable {
                message: "the batch carrying this record stopped before it was written".into(),
                retry_after: None,
                http_status: None,
            })
        })
    }
}

impl<S: BatchSink> Inner<S> {
    /// Makes the bulk call for `entries`. Its span is a child of the first record's event
    /// and follows from every other one, so each event's trace reaches the call that wrote
    /// it (as a link where it is not the parent).
    async fn flush(self: Arc<Self>, key: S::Key, entries: Vec<(S::Item, Reply<S>, tracing::Span)>) {
        // A record whose caller stopped waiting is not written: its event went back to
        // JetStream (the writer claim was lost, the worker is stopping), and another replica
        // may already have written a newer version of the record, which this old one would
        // overwrite. A record already in a call that is out cannot be recalled.
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|(_, reply, _)| !reply.is_closed())
            .collect();
        if entries.is_empty() {
            return;
        }
        let sent = entries.len();
        let mut items = Vec::with_capacity(sent);
        let mut replies = Vec::with_capacity(sent);
        let mut callers = Vec::with_capacity(sent);
        for (item, reply, caller) in entries {
            items.push(item);
            replies.push(reply);
            callers.push(caller);
        }
        let span = match callers.first() {
            Some(first) => tracing::info_span!(parent: first, "batch", records = sent),
            None => tracing::info_span!("batch", records = sent),
        };
        for caller in callers.iter().skip(1) {
            span.follows_from(caller);
        }
        match self.sink.flush(&key, items).instrument(span).await {
            Ok(results) if results.len() == sent => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Ok(results) => {
                let error = DeliveryError::Retryable {
                    message: format!(
                        "the bulk call answered {} results for {sent} records",
                        results.len()
                    ),
                    retry_after: None,
                    http_status: None,
                };
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_events::FailureClass;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles numbers; refuses 13; counts calls and remembers their sizes.
    #[derive(Default)]
    struct Doubler {
        calls: AtomicUsize,
        sizes: Mutex<Vec<usize>>,
    }

    impl BatchSink for Doubler {
        type Key = &'static str;
        type Item = u32;
        type Output = u32;

        async fn flush(
            &self,
            _key: &&'static str,
            items: Vec<u32>,
        ) -> Result<Vec<Result<u32, DeliveryError>>, DeliveryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(items.len());
            Ok(items
                .into_iter()
                .map(|n| {
                    if n == 13 {
                        Err(DeliveryError::permanent(FailureClass::Rejected, "no 13"))
                    } else {
                        Ok(n * 2)
                    }
                })
                .collect())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_group_goes_at_once_and_each_caller_gets_its_own_result() {
        let batcher = Batcher::new(Doubler::default(), 10, Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let calls: Vec<_> = (0..20)
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit("Contacts", n).await })
            })
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            let result = call.await.expect("joined");
            if n == 13 {
                assert_eq!(result.unwrap_err().to_string(), "no 13");
            } else {
                assert_eq!(result.expect("written"), n as u32 * 2);
            }
        }
        assert_eq!(batcher.sink().calls.load(Ordering::SeqCst), 2);
        assert_eq!(*batcher.sink().sizes.lock().unwrap(), vec![10, 10]);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "full groups do not wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_whose_caller_gave_up_is_not_written() {
        let batcher = Batcher::new(Doubler::default(), 100, Duration::from_millis(500));
        let abandoned = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit("Contacts", 4).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The claim on the record was lost: the runtime drops the event's work.
        abandoned.abort();
        let kept = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit("Contacts", 5).await })
        };
        assert_eq!(kept.await.unwrap().unwrap(), 10);
        assert_eq!(
            *batcher.sink().sizes.lock().unwrap(),
            vec![1],
            "4 never sent"
        );

        let alone = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit("Deals", 6).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        alone.abort();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            batcher.sink().calls.load(Ordering::SeqCst),
            1,
            "no empty call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_group_waits_at_most_max_wait_and_groups_stay_apart() {
        let batcher = Batcher::new(Doubler::default(), 100, Duration::from_millis(500));
        let started = tokio::time::Instant::now();
        let a = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit("Contacts", 1).await })
        };
        let b = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit("Deals", 2).await })
        };
        let c = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit("Contacts", 3).await })
        };
        assert_eq!(a.await.unwrap().unwrap(), 2);
        assert_eq!(b.await.unwrap().unwrap(), 4);
        assert_eq!(c.await.unwrap().unwrap(), 6);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        let mut sizes = batcher.sink().sizes.lock().unwrap().clone();
        sizes.sort();
        assert_eq!(sizes, vec![1, 2], "one call per key");
    }
}
