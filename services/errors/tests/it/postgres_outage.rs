//! Losing Postgres for a while loses nothing: failures wait in JetStream until it is back.
//!
//! The test runs its own PostgreSQL (initdb and pg_ctl on a temporary directory and a free
//! port), so stopping it never touches the machine's shared cluster or other tests.

use crate::app::{eventually_within, simple_failure, spawn_app_with, Options, AC, PD};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long Postgres stays down while failures keep arriving.
const OUTAGE: Duration = Duration::from_secs(30);

/// A PostgreSQL server of the test's own, stopped (immediately) on drop.
struct PrivatePostgres {
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// initdb and postgres refuse to run as root; as root they run as user `postgres`.
    run_as_postgres: bool,
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let run_as_postgres = is_root();
        if run_as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown of the cluster directory to postgres failed"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let postgres = PrivatePostgres {
            port,
            bin,
            dir,
            run_as_postgres,
        };
        let data = postgres.data_dir();
        postgres.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        postgres.resume();
        postgres
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().expect("utf-8 path"),
                "-l",
                log.to_str().expect("utf-8 path"),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server the way an operator's restart does (fast shutdown).
    fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().expect("utf-8 path"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}\nserver log:\n{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(self.data_dir())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// PostgreSQL 15's programs (Debian keeps them off PATH), else whatever PATH has.
fn postgres_bin_dir() -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").exists() {
        return debian.to_path_buf();
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "initdb is not installed: run deploy/ensure-postgres.sh (make test does)"
    );
    Path::new(&path)
        .parent()
        .expect("initdb has a directory")
        .to_path_buf()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test]
async fn failures_arriving_while_postgres_is_down_are_all_stored_once_it_returns() {
    let postgres = PrivatePostgres::start();
    let app = spawn_app_with(Options {
        postgres_server: Some(postgres.server_url()),
        ..Options::default()
    })
    .await;

    // Before the outage: two failures stored as usual.
    app.publish(&simple_failure(AC, "cus_before_a", 1)).await;
    app.publish(&simple_failure(PD, "cus_before_b", 2)).await;
    app.wait_failure("open", PD, "customer/cus_before_b", |_| true)
        .await;

    postgres.stop();
    let down_at = Instant::now();
    // Failures keep arriving for the whole outage: a new record every second, and a repeat
    // of one stored before (which must be counted, not lost).
    let mut published = Vec::new();
    let mut step = 10;
    while down_at.elapsed() < OUTAGE {
        let connection = if step % 2 == 0 { AC } else { PD };
        published.push(
            app.publish(&simple_failure(
                connection,
                &format!("cus_down_{step}"),
                step,
            ))
            .await,
        );
        if step == 20 {
            published.push(app.publish(&simple_failure(AC, "cus_before_a", step)).await);
        }
        step += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let arrived_during_outage = (step - 10) as usize;
    assert!(
        arrived_during_outage >= 25,
        "only {arrived_during_outage} failures were sent"
    );
    // Nothing was acked while the database was away.
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "ready without Postgres");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = app
        .js
        .get_consumer_from_stream(
            app.topology.errors_consumer(),
            app.topology.outcomes_stream(),
        )
        .await
        .expect("errors consumer");
    let info = consumer.info().await.expect("consumer info");
    assert!(
        info.ack_floor.stream_sequence < published[0].sequence,
        "an outcome was acked while Postgres was down: {info:?}"
    );

    postgres.resume();
    let last = published.last().expect("published").sequence;
    app.wait_consumed_within(last, Duration::from_secs(120))
        .await;

    let rows: Vec<(String, String, i64)> = eventually_within(
        "every failure in Postgres",
        Duration::from_secs(30),
        || async {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT destination_connection, record_key, count FROM sync_failures \
                 ORDER BY record_key",
            )
            .fetch_all(app.pool())
            .await
            .ok()?;
            (rows.len() == arrived_during_outage + 2).then_some(rows)
        },
    )
    .await;
    for offset in 0..arrived_during_outage {
        let step = 10 + offset;
        let connection = if step % 2 == 0 { AC } else { PD };
        let record = format!("customer/cus_down_{step}");
        assert!(
            rows.iter()
                .any(|(c, r, count)| c == connection && *r == record && *count == 1),
            "{record} at {connection} missing: {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .any(|(c, r, count)| c == AC && r == "customer/cus_before_a" && *count == 2),
        "the repeat during the outage was not counted: {rows:?}"
    );
    app.stop().await;
}
