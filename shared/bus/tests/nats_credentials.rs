//! Credentials in the NATS URL reach the server, and never the error messages.

use billsync_bus::{connect, BusError};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server of the test's own on a free port, asking for `auth` (its command-line
/// flags); killed on drop. No JetStream, so it keeps nothing on disk.
struct AuthNats {
    port: u16,
    child: Child,
}

impl AuthNats {
    fn start(auth: &[&str]) -> AuthNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let binary = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(auth)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (is it installed? make test installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        AuthNats { port, child }
    }
}

impl Drop for AuthNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects and makes one round trip, within a deadline: a client that connected
/// anonymously (or not at all) never completes one.
async fn round_trip(url: &str) -> Result<(), String> {
    let attempt = async {
        let client = connect(url, "billsync-credentials-test")
            .await
            .map_err(|e| full_text(&e))?;
        client.flush().await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "no round trip within 10 s".to_string())?
}

/// An error with every source in its chain, as `{:#}` of anyhow would print it.
fn full_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[tokio::test]
async fn a_user_and_password_in_the_url_authenticate() {
    // '@', ':' and '/' must be percent-encoded in a URL's password.
    let nats = AuthNats::start(&["--user", "billsync", "--pass", "s3cr@t:pa/ss"]);
    let url = format!("nats://billsync:s3cr%40t%3Apa%2Fss@127.0.0.1:{}", nats.port);
    round_trip(&url)
        .await
        .unwrap_or_else(|e| panic!("credentialed URL: {e}"));
}

#[tokio::test]
async fn a_token_in_the_url_authenticates() {
    let nats = AuthNats::start(&["--auth", "t0ken-for-billsync"]);
    let url = format!("nats://t0ken-for-billsync@127.0.0.1:{}", nats.port);
    round_trip(&url)
        .await
        .unwrap_or_else(|e| panic!("token URL: {e}"));
}

#[tokio::test]
async fn a_refused_password_fails_at_once_and_is_never_shown() {
    let nats = AuthNats::start(&["--user", "billsync", "--pass", "the-right-one"]);
    let url = format!("nats://billsync:Wr0ng-Pa55word@127.0.0.1:{}", nats.port);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        connect(&url, "billsync-credentials-test"),
    )
    .await
    .expect("a refused password is reported, not retried forever");
    let error = result.expect_err("the server refuses the password");
    let text = full_text(&error);
    assert!(
        matches!(error, BusError::Credentials { .. }),
        "expected a credentials error: {text}"
    );
    assert!(!text.contains("Wr0ng-Pa55word"), "{text}");
    assert!(!text.contains("the-right-one"), "{text}");
    assert!(
        text.contains(&format!("nats://billsync:***@127.0.0.1:{}", nats.port)),
        "{text}"
    );
    assert!(
        format!("{error:?}").find("Wr0ng-Pa55word").is_none(),
        "{error:?}"
    );

    // A refused token is not shown either.
    let token = AuthNats::start(&["--auth", "the-right-token"]);
    let url = format!("nats://Wr0ng-T0ken@127.0.0.1:{}", token.port);
    let error = connect(&url, "billsync-credentials-test")
        .await
        .expect_err("the server refuses the token");
    let text = full_text(&error);
    assert!(!text.contains("Wr0ng-T0ken"), "{text}");
    assert!(text.contains("nats://***@127.0.0.1"), "{text}");
}
