//! The errors service's web page in headless Chromium, driven over WebDriver (chromedriver):
//! sign in with the admin token, ignore one failure, retry another, and check the result in
//! the API and the CRM.

use crate::operator_api::{api_get, send, wait_failure, WAIT};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, AcFaults};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The key WebDriver gives element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn chromedriver_binary() -> String {
    for candidate in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] {
        if Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    let found = Command::new("sh")
        .args(["-c", "command -v chromedriver"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        !found.is_empty() && Path::new(CHROMIUM).exists(),
        "Chromium and chromedriver are needed for the browser test: run deploy/ensure-chromium.sh \
         (make test runs it)"
    );
    found
}

/// chromedriver on a free port, in a process group of its own so that dropping it also ends
/// the Chromium it started (even when a test fails before closing its session).
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start(http: &reqwest::Client) -> ChromeDriver {
        let binary = chromedriver_binary();
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run deploy/ensure-chromium.sh (make test runs it)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}): run deploy/ensure-chromium.sh (make test runs it)")
            });
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        eventually(
            "chromedriver to be ready",
            Duration::from_secs(20),
            || async {
                let status: Value = http
                    .get(format!("{}/status", driver.url))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (status["value"]["ready"] == true).then_some(())
            },
        )
        .await;
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid; Chromium and its helpers are in it.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser {
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(driver: &ChromeDriver, http: &reqwest::Client) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1400,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
                }
            }
        });
        let answer: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .expect("JSON answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start: {answer}"))
            .to_string();
        Browser {
            http: http.clone(),
            session: format!("{}/session/{session}", driver.url),
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let answer: Value = request
            .send()
            .await
            .expect("WebDriver request")
            .json()
            .await
            .expect("JSON answer");
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// The element matching `css`, if the page has one now.
    async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found[ELEMENT].as_str().map(str::to_string)
    }

    /// Waits for an element matching `css` that is displayed.
    async fn wait_for(&self, css: &str) -> String {
        eventually(&format!("{css} on the page"), WAIT, || async {
            let element = self.find(css).await?;
            self.displayed(&element).await.then_some(element)
        })
        .await
    }

    async fn displayed(&self, element: &str) -> bool {
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/displayed"),
            Value::Null,
        )
        .await
            == true
    }

    async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn wait_text(&self, css: &str, expected: &str) -> String {
        eventually(&format!("{css} to say {expected:?}"), WAIT, || async {
            let element = self.find(css).await?;
            let text = self
                .command(
                    reqwest::Method::GET,
                    &format!("/element/{element}/text"),
                    Value::Null,
                )
                .await;
            let text = text.as_str()?.to_string();
            text.contains(expected).then_some(text)
        })
        .await
    }

    async fn close(self) {
        self.command(reqwest::Method::DELETE, "", Value::Null).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_ignores_and_retries_failures_in_the_browser() {
    let stack = Stack::start(StackOptions::default()).await;
    let (ignored_email, retried_email) = ("web.ignored@example.com", "web.retried@example.com");
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            reject_emails: vec![ignored_email.into(), retried_email.into()],
            ..Default::default()
        },
    );
    send(
        &stack,
        &stripe::customer_created_event("cus_WEB1", ignored_email, "Wes Ignored"),
    )
    .await;
    send(
        &stack,
        &stripe::customer_created_event("cus_WEB2", retried_email, "Wanda Retried"),
    )
    .await;
    let to_ignore = wait_failure(&stack, "open", "ac-test", "customer/cus_WEB1").await;
    let to_retry = wait_failure(&stack, "open", "ac-test", "customer/cus_WEB2").await;
    // ActiveCampaign now takes both: what happens next is up to the operator.
    stack
        .sandbox
        .activecampaign
        .set_faults(&stack.ac_account, AcFaults::default());

    let http = reqwest::Client::new();
    let driver = ChromeDriver::start(&http).await;
    let browser = Browser::open(&driver, &http).await;
    browser.go(&format!("{}/", stack.errors_url)).await;

    // Sign in with a wrong token first: refused, and told so.
    browser.type_into("#token", "not-the-token").await;
    browser.click("#login-button").await;
    browser.wait_text("#login-error", "refused").await;
    browser.type_into("#token", &stack.admin_token).await;
    browser.click("#login-button").await;

    let ignore_row = format!("#failures tr[data-id=\"{}\"]", to_ignore["id"]);
    let retry_row = format!("#failures tr[data-id=\"{}\"]", to_retry["id"]);
    browser.wait_for(&ignore_row).await;
    browser.wait_for(&retry_row).await;
    let row_text = browser.text(&ignore_row).await;
    assert!(row_text.contains("customer/cus_WEB1"), "{row_text}");
    assert!(row_text.contains("ac-test"), "{row_text}");

    // Ignore the first.
    browser
        .click(&format!("{ignore_row} button[data-action=\"ignore\"]"))
        .await;
    browser
        .wait_text(
            "#notice",
            &format!("Failure {} (customer/cus_WEB1) ignored", to_ignore["id"]),
        )
        .await;
    eventually("the ignored row to leave the table", WAIT, || async {
        browser.find(&ignore_row).await.is_none().then_some(())
    })
    .await;

    // Retry the second.
    browser
        .click(&format!("{retry_row} button[data-action=\"retry\"]"))
        .await;
    browser
        .wait_text(
            "#notice",
            &format!(
                "Retry of failure {} (customer/cus_WEB2) sent",
                to_retry["id"]
            ),
        )
        .await;

    // The result, as the API and the CRM see it.
    let ignored = api_get(&stack, &format!("/api/v1/failures/{}", to_ignore["id"])).await;
    assert_eq!(ignored["status"], "ignored");
    let contact = eventually("the retried record in the CRM", WAIT, || async {
        stack
            .sandbox
            .activecampaign
            .snapshot(&stack.ac_account)
            .contact_by_email(retried_email)
            .cloned()
    })
    .await;
    assert_eq!(contact.last_name, "Retried");
    wait_failure(&stack, "resolved", "ac-test", "customer/cus_WEB2").await;
    // The ignored record was not synced by anything the page did.
    assert!(stack
        .sandbox
        .activecampaign
        .snapshot(&stack.ac_account)
        .contact_by_email(ignored_email)
        .is_none());

    // The filters show the ignored failure; the runs tab answers.
    let status = browser.wait_for("#filter-status").await;
    browser
        .command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({
                "script": "arguments[0].value = 'ignored';",
                "args": [{ (ELEMENT): status }]
            }),
        )
        .await;
    browser.click("#apply-filters").await;
    browser.wait_for(&ignore_row).await;
    browser.click("#tab-runs").await;
    browser.wait_text("#runs-empty", "No sync runs yet").await;
    browser.close().await;
    drop(driver);
    stack.stop().await;
}
