//! One queue per ordering key: events of one customer run in order, customers in parallel.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio_util::task::TaskTracker;

/// Runs `work` for each job, sequentially per key and concurrently across keys.
///
/// Each key's queue lives in the map, under one lock. A lane's task takes its next job
/// under that lock and removes the key once its queue is empty, so a job dispatched
/// while the lane is closing either lands in the queue the task still drains or opens a
/// new lane; none is stranded. A queue is a plain `VecDeque` sized to what it holds (a
/// lane usually holds one job), not a channel whose first block reserves room for 32.
pub struct Lanes<J, W> {
    lanes: Arc<Mutex<HashMap<String, VecDeque<J>>>>,
    tracker: TaskTracker,
    work: Arc<W>,
}

impl<J, W, F> Lanes<J, W>
where
    J: Send + 'static,
    W: Fn(J) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    pub fn new(work: W) -> Self {
        Self {
            lanes: Arc::new(Mutex::new(HashMap::new())),
            tracker: TaskTracker::new(),
            work: Arc::new(work),
        }
    }

    pub fn dispatch(&self, key: String, job: J) {
        let mut lanes = self.lanes.lock().expect("lanes lock poisoned");
        if let Some(queue) = lanes.get_mut(&key) {
            queue.push_back(job);
            return;
        }
        // The task takes this job directly; the map's empty queue marks the lane open.
        lanes.insert(key.clone(), VecDeque::new());
        drop(lanes);
        let registry = Arc::clone(&self.lanes);
        let work = Arc::clone(&self.work);
        self.tracker.spawn(async move {
            let mut next = job;
            loop {
                work(next).await;
                let mut lanes = registry.lock().expect("lanes lock poisoned");
                let queue = lanes.get_mut(&key).expect("an open lane stays in the map");
                match queue.pop_front() {
                    Some(job) => {
                        if queue.is_empty() && queue.capacity() > 8 {
                            // Give back what a burst grew it to.
                            queue.shrink_to_fit();
                        }
                        next = job;
                    }
                    None => {
                        lanes.remove(&key);
                        return;
                    }
                }
            }
        });
    }

    /// Number of keys with queued or running work.
    pub fn active(&self) -> usize {
        self.lanes.lock().expect("lanes lock poisoned").len()
    }

    /// Waits until every queued job has run.
    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_key_runs_in_order_while_keys_run_concurrently() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let lanes = Lanes::new(move |(key, job): (String, u64)| {
            let log = Arc::clone(&sink);
            async move {
                // Later jobs sleep less: only per-key sequencing keeps them in order.
                tokio::time::sleep(Duration::from_millis(50 - job)).await;
                log.lock().expect("log").push((key, job));
            }
        });
        for i in 0..50u64 {
            let key = format!("k{}", i % 5);
            lanes.dispatch(key.clone(), (key, i));
        }
        lanes.drain().await;
        let log = log.lock().expect("log");
        assert_eq!(log.len(), 50);
        for k in 0..5 {
            let key = format!("k{k}");
            let seen: Vec<u64> = log
                .iter()
                .filter(|(kk, _)| *kk == key)
                .map(|(_, j)| *j)
                .collect();
            let mut sorted = seen.clone();
            sorted.sort();
            assert_eq!(seen, sorted, "jobs of {key} ran out of order");
        }
        assert_eq!(lanes.active(), 0);
    }
}
