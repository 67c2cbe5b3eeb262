//! NATS and Postgres for tests: the machine's shared servers (started if down), fresh
//! databases, and private NATS servers for tests that stop or kill one.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NATS_URL: &str = "nats://127.0.0.1:4222";
const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn reachable(addr: &str) -> bool {
    addr.parse()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("tests/e2e sits two levels below the repository root")
}

/// Starts a machine service with the repository's deploy script when it is not answering.
fn ensure_service(addr: &str, script: &str) {
    if reachable(addr) {
        return;
    }
    let status = Command::new("bash")
        .arg(repo_root().join("deploy").join(script))
        .status()
        .unwrap_or_else(|e| panic!("cannot run deploy/{script}: {e}"));
    assert!(
        status.success(),
        "deploy/{script} could not start the service on {addr}"
    );
}

/// The shared NATS (JetStream) URL; `BILLSYNC_TEST_NATS_URL` points tests elsewhere.
pub fn ensure_nats() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("BILLSYNC_TEST_NATS_URL") {
        Ok(url) => url,
        Err(_) => {
            ensure_service("127.0.0.1:4222", "ensure-nats.sh");
            NATS_URL.to_string()
        }
    })
    .clone()
}

/// The admin URL of the shared Postgres; `BILLSYNC_TEST_POSTGRES_URL` points tests elsewhere.
pub fn ensure_postgres() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("BILLSYNC_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) => {
            ensure_service("127.0.0.1:5432", "ensure-postgres.sh");
            POSTGRES_ADMIN_URL.to_string()
        }
    })
    .clone()
}

/// A database of one's own, dropped by [`TestDatabase::drop_database`].
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

pub async fn fresh_database() -> TestDatabase {
    use sqlx::Connection;
    let admin_url = ensure_postgres();
    let name = format!("billsync_{}", crate::unique_prefix());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to Postgres as admin");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("admin URL {admin_url} has no database part"),
    };
    TestDatabase {
        name,
        url,
        admin_url,
    }
}

impl TestDatabase {
    pub async fn drop_database(&self) {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// A PostgreSQL server of the test's own, stopped (immediately) on drop.
pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// initdb and postgres refuse to run as root; as root they run as user `postgres`.
    run_as_postgres: bool,
}

impl PrivatePostgres {
    pub fn start() -> Self {
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

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn resume(&self) {
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
    pub fn stop(&self) {
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

/// A nats-server of the test's own, on a free port with its own store, for tests that stop
/// or kill NATS and for benchmarks that read its monitoring endpoint. Killed on drop.
pub struct PrivateNats {
    pub port: u16,
    /// The HTTP monitoring port (`/varz`, `/connz`), when started with one.
    pub monitor_port: Option<u16>,
    child: Option<Child>,
    store: tempfile::TempDir,
}

impl PrivateNats {
    pub fn start() -> PrivateNats {
        Self::start_with(None)
    }

    /// With its HTTP monitoring endpoint on a free port: a benchmark counts the server's
    /// messages (`/varz`, `/connz`) without sharing them with anyone else's tests.
    pub fn start_monitored() -> PrivateNats {
        Self::start_with(Some(crate::free_port()))
    }

    fn start_with(monitor_port: Option<u16>) -> PrivateNats {
        let store = tempfile::tempdir().expect("temp dir for the NATS store");
        let mut nats = PrivateNats {
            port: crate::free_port(),
            monitor_port,
            child: None,
            store,
        };
        nats.restart();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<monitoring port>`, when started with one.
    pub fn monitor_url(&self) -> Option<String> {
        self.monitor_port
            .map(|port| format!("http://127.0.0.1:{port}"))
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(nats_server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .args(
                self.monitor_port
                    .iter()
                    .flat_map(|port| ["-m".to_string(), port.to_string()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (is it installed? make test installs it)");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        let start = Instant::now();
        while !reachable(&addr) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "private nats-server did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn nats_server_binary() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}
