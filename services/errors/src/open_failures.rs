//! The `billsync_errors_open_failures` gauge: open failures per destination connection,
//! counted in Postgres every 15 s and soon after an outcome, ignore or retry changes them.

use crate::store::{self, OpenFailureCount};
use crate::Database;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const METRIC: &str = "billsync_errors_open_failures";
/// How often the counts are taken when nothing says they changed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(15);
/// Changes arriving together (a burst of outcomes, a bulk ignore) are counted once.
const SETTLE: Duration = Duration::from_millis(200);

/// `(destination, destination_connection)`: the gauge's labels.
type Labels = (String, String);

/// Tells the refresher that open failures may have changed; cheap to clone.
#[derive(Clone, Default)]
pub struct OpenFailuresGauge {
    changed: Arc<Notify>,
}

impl OpenFailuresGauge {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a count soon, rather than at the next interval.
    pub fn changed(&self) {
        // One stored permit: changes during a count cause exactly one more count.
        self.changed.notify_one();
    }

    /// Keeps the gauge current until `shutdown`. `configured` are the destination
    /// connections of the configuration: they report 0 rather than nothing when they have
    /// no open failure. No value is reported before the first successful count.
    pub async fn run(self, db: Database, configured: Vec<Labels>, shutdown: CancellationToken) {
        let mut reported: BTreeSet<Labels> = configured.into_iter().collect();
        loop {
            if let Some(counts) = count(&db).await {
                report(&mut reported, counts);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
                _ = self.changed.notified() => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(SETTLE) => {}
                    }
                }
            }
        }
        tracing::debug!("Open-failures gauge stopped.");
    }
}

async fn count(db: &Database) -> Option<Vec<OpenFailureCount>> {
    // Before migrations there is nothing to count; the first count follows them.
    let pool = db.pool().ok()?;
    match store::open_failure_counts(pool, db.deployment()).await {
        Ok(counts) => Some(counts),
        Err(error) => {
            tracing::warn!(%error, metric = METRIC, "Counting open failures failed; the gauge keeps its last values.");
            None
        }
    }
}

/// Sets the gauge of every connection counted, and 0 for each one reported before (or
/// configured) that has no open failure any more.
fn report(reported: &mut BTreeSet<Labels>, counts: Vec<OpenFailureCount>) {
    for (labels, open) in current_values(reported, counts) {
        let (destination, destination_connection) = labels.clone();
        metrics::gauge!(METRIC, "destination" => destination, "destination_connection" => destination_connection)
            .set(open as f64);
        reported.insert(labels);
    }
}

/// What each label set must show now: its count, or 0 when it has none.
fn current_values(
    reported: &BTreeSet<Labels>,
    counts: Vec<OpenFailureCount>,
) -> BTreeMap<Labels, i64> {
    let mut values: BTreeMap<Labels, i64> = reported.iter().map(|l| (l.clone(), 0)).collect();
    for c in counts {
        values.insert((c.destination, c.destination_connection), c.open);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(destination: &str, connection: &str) -> Labels {
        (destination.into(), connection.into())
    }

    fn counted(destination: &str, connection: &str, open: i64) -> OpenFailureCount {
        OpenFailureCount {
            destination: destination.into(),
            destination_connection: connection.into(),
            open,
        }
    }

    #[test]
    fn connections_without_open_failures_show_zero() {
        let reported: BTreeSet<Labels> =
            [labels("activecampaign", "ac"), labels("pipedrive", "pd")].into();
        let values = current_values(&reported, vec![counted("pipedrive", "pd", 3)]);
        assert_eq!(
            values,
            BTreeMap::from([
                (labels("activecampaign", "ac"), 0),
                (labels("pipedrive", "pd"), 3),
            ])
        );
        // A connection no longer configured but still failing is shown too.
        let values = current_values(&BTreeSet::new(), vec![counted("zoho", "old", 1)]);
        assert_eq!(values, BTreeMap::from([(labels("zoho", "old"), 1)]));
    }
}
