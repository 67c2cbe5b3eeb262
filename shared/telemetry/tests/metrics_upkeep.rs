//! Histogram samples do not pile up in a process nobody scrapes (issue 16, soak): a worker
//! records a few per event, and without upkeep each stays in memory until `/metrics` is read.

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::time::{Duration, Instant};

/// Counts the bytes this test binary allocates and frees.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since the program started.
fn live_mib() -> f64 {
    let stats = GLOBAL.stats();
    (stats.bytes_allocated as f64 - stats.bytes_deallocated as f64) / (1024.0 * 1024.0)
}

#[test]
fn unscraped_histogram_samples_are_folded_away() {
    let _handle = billsync_telemetry::metrics_handle();
    metrics::histogram!("upkeep_test_seconds").record(0.0);
    let before = live_mib();
    // As many samples as a worker records over about 250,000 events.
    for i in 0..1_000_000u32 {
        metrics::histogram!("upkeep_test_seconds").record(f64::from(i % 1000) / 1000.0);
    }
    let recorded = live_mib();
    assert!(
        recorded - before > 4.0,
        "1,000,000 raw samples should take several MiB before upkeep ({before:.1} → {recorded:.1} MiB)"
    );
    // Nothing renders `/metrics` here: only the upkeep thread can free them. Samples keep
    // trickling in, as in a live service, which also lets the freed blocks be reclaimed
    // (the recorder frees them through epoch-based reclamation, run on later records).
    let deadline = Instant::now() + billsync_telemetry::METRICS_UPKEEP_EVERY * 3;
    while live_mib() - before > 1.0 {
        for _ in 0..100 {
            metrics::histogram!("upkeep_test_seconds").record(0.5);
        }
        assert!(
            Instant::now() < deadline,
            "raw samples still held {:.1} MiB above the start after {:?}",
            live_mib() - before,
            billsync_telemetry::METRICS_UPKEEP_EVERY * 3
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
