//! The README, checked against what billsync does: the Chargebee quick start run as it is
//! written, and the mapping reference against the mapping code.

use billsync_e2e::{
    billsync_binary, ensure_nats, eventually, free_port, fresh_database, sandbox_binary,
    unique_prefix,
};
use billsync_sandbox::AcSnapshot;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(repository().join("README.md")).expect("README.md")
}

/// The first fenced block after the line containing `marker`, without its fences.
fn block_after(text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"));
    let rest = &text[start..];
    let open = rest.find("```").expect("a fenced block after the marker");
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("the fence's line") + 1..];
    body[..body.find("\n```").expect("the block's end")].to_string()
}

/// The addresses the quick start uses (the sandbox, ingest, errors, the workers), each with a
/// free port of this machine in its place, so the test runs beside other tests and a demo.
fn moved_addresses() -> Vec<(String, String)> {
    [9100, 8080, 8090, 8091, 8092, 8093]
        .into_iter()
        .map(|port| {
            (
                format!("127.0.0.1:{port}"),
                format!("127.0.0.1:{}", free_port()),
            )
        })
        .collect()
}

fn moved(text: &str, addresses: &[(String, String)]) -> String {
    addresses
        .iter()
        .fold(text.to_string(), |text, (from, to)| text.replace(from, to))
}

/// The README's Chargebee quick start, followed literally with the binaries of this build: the
/// example configuration and the commands as written, other ports in place of the fixed ones,
/// and this test's own NATS prefix and database through the documented environment overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_chargebee_quick_start() {
    let readme = readme();
    let script = block_after(
        &readme,
        "The test readme_chargebee_quick_start runs this block",
    );
    let addresses = moved_addresses();
    let dir = tempfile::tempdir().expect("tempdir");
    let example = std::fs::read_to_string(repository().join("billsync.example.toml"))
        .expect("billsync.example.toml");
    std::fs::write(
        dir.path().join("billsync.example.toml"),
        moved(&example, &addresses),
    )
    .expect("write the configuration");
    let sandbox_url = format!("http://{}", addresses[0].1);

    let nats_url = ensure_nats();
    let prefix = unique_prefix();
    let db = fresh_database().await;
    let binaries = billsync_binary()
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    assert_eq!(sandbox_binary().parent(), Some(binaries.as_path()));
    let path = format!(
        "{}:{}",
        binaries.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::fs::File::create(dir.path().join("script.log")).expect("log file");
    let mut child = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &moved(&script, &addresses)])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("BILLSYNC_NATS_URL", &nats_url)
        .env("BILLSYNC_NATS_PREFIX", &prefix)
        .env("BILLSYNC_POSTGRES_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone().expect("log file"))
        .stderr(output)
        // Its own process group: what the script leaves running in the background (the
        // sandbox, billsync) is stopped with it at the end.
        .process_group(0)
        .spawn()
        .expect("run bash");
    let group = child.id().expect("the script's pid");
    let log = || {
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        format!(
            "script:\n{}\nbillsync.log:\n{}",
            read("script.log"),
            read("billsync.log")
        )
    };
    let finished = tokio::time::timeout(Duration::from_secs(300), child.wait()).await;
    let status = match finished {
        Ok(status) => status.expect("the script's status"),
        Err(_) => {
            stop_group(group).await;
            panic!("the quick start did not finish within 300 s\n{}", log());
        }
    };
    if !status.success() {
        stop_group(group).await;
        panic!("the quick start failed ({status})\n{}", log());
    }

    // What the README promises.
    let http = reqwest::Client::new();
    let snapshot_url = format!("{sandbox_url}/__sandbox/activecampaign/demo");
    let promised = [
        ("early.bird@example.com", "Nest Ltd", "pro-usd"),
        (
            "ada.lovelace@chargebee.example.com",
            "Demo Inc.",
            "basic-usd",
        ),
        (
            "grace.hopper@chargebee.example.com",
            "Demo Inc.",
            "basic-usd",
        ),
        (
            "alan.turing@chargebee.example.com",
            "Demo Inc.",
            "basic-usd",
        ),
    ];
    let reached = tokio::time::timeout(
        Duration::from_secs(60),
        eventually("the promised contacts", Duration::from_secs(60), || async {
            let snapshot: AcSnapshot = http
                .get(&snapshot_url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let complete = promised.iter().all(|(email, company, _)| {
                snapshot.contact_by_email(email).is_some_and(|c| {
                    snapshot.field_value(&c.id, "Cb_orgName").as_deref() == Some(company)
                        && !snapshot.lists_of(&c.id).is_empty()
                })
            });
            complete.then_some(snapshot)
        }),
    )
    .await;
    let Ok(snapshot) = reached else {
        stop_group(group).await;
        panic!("the promised contacts did not arrive\n{}", log());
    };
    // The same customers in the emulated Zoho CRM organisation, as the README says.
    let zoho_url = format!("{sandbox_url}/__sandbox/zoho/demo-org");
    let zoho = tokio::time::timeout(
        Duration::from_secs(60),
        eventually(
            "the promised Zoho records",
            Duration::from_secs(60),
            || async {
                let zoho: billsync_sandbox::ZohoSnapshot =
                    http.get(&zoho_url).send().await.ok()?.json().await.ok()?;
                let complete = promised.iter().all(|(email, company, _)| {
                    let account = zoho.find("Accounts", "Account_Name", company);
                    zoho.find("Contacts", "Email", email).is_some_and(|c| {
                        account.is_some_and(|a| c.pointer("/Account_Name/id") == a.get("id"))
                    })
                }) && zoho.deals.len() == 4;
                complete.then_some(zoho)
            },
        ),
    )
    .await;
    let Ok(zoho) = zoho else {
        stop_group(group).await;
        panic!("the promised Zoho records did not arrive\n{}", log());
    };
    let checked = billsync_e2e::report_spec_checks(&sandbox_url, "zoho", "demo-org").await;
    stop_group(group).await;
    assert!(
        checked.as_ref().is_ok_and(|n| *n > 0),
        "the demo's Zoho requests against the v8 spec: {checked:?}"
    );
    assert_eq!(zoho.contacts.len(), 4, "{:#?}", zoho.contacts);
    assert_eq!(zoho.accounts.len(), 2, "{:#?}", zoho.accounts);
    for deal in &zoho.deals {
        assert_eq!(deal["Stage"], "Closed Won", "{deal}");
    }
    assert_eq!(snapshot.contacts.len(), 4, "{:#?}", snapshot.contacts);
    for (email, company, plan) in promised {
        let contact = snapshot.contact_by_email(email).expect("contact");
        let field = |name: &str| snapshot.field_value(&contact.id, name);
        assert_eq!(field("Cb_orgName").as_deref(), Some(company), "{email}");
        assert_eq!(
            field("Cb_subscriptionPlanName").as_deref(),
            Some(plan),
            "{email}"
        );
        assert_eq!(
            field("Cb_subscriptionStatus").as_deref(),
            Some("active"),
            "{email}"
        );
        assert_eq!(
            field("Cb_chargebeeCustomerStatus").as_deref(),
            Some("active"),
            "{email}"
        );
        assert!(field("Cb_subscriptionID").is_some_and(|id| !id.is_empty()));
        assert_eq!(
            snapshot.lists_of(&contact.id),
            vec![("1".to_string(), 1)],
            "{email} is not subscribed to list 1"
        );
    }
    let early = snapshot
        .contact_by_email("early.bird@example.com")
        .expect("contact");
    assert_eq!(
        snapshot
            .field_value(&early.id, "Cb_subscriptionID")
            .as_deref(),
        Some("sub_early")
    );
    let nats = billsync_bus::connect(&nats_url, "billsync-e2e-readme")
        .await
        .expect("NATS");
    billsync_e2e::remove_deployment(&nats, &prefix).await;
    db.drop_database().await;
}

/// SIGTERM to the script's process group (the sandbox and billsync it left running), then
/// SIGKILL to what is still there after 20 s.
async fn stop_group(group: u32) {
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, "--", &format!("-{group}")])
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !signal("-TERM") {
        return;
    }
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !signal("-0") {
            return;
        }
    }
    signal("-KILL");
}

/// The rows of the Markdown table right after the line containing `marker`, each as its
/// cells with `\|` unescaped; the header and separator rows left out.
fn table_after(text: &str, marker: &str) -> Vec<Vec<String>> {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"));
    text[start..]
        .lines()
        .skip(1)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let mut cells = vec![String::new()];
            let mut chars = line.trim().trim_matches('|').chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'|') => {
                        chars.next();
                        cells.last_mut().expect("a cell").push('|');
                    }
                    '|' => cells.push(String::new()),
                    c => cells.last_mut().expect("a cell").push(c),
                }
            }
            cells.into_iter().map(|c| c.trim().to_string()).collect()
        })
        .collect()
}

/// Every `code span` of a cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The one code span a cell starts with, if it starts with one.
fn leading_code(cell: &str) -> Option<&str> {
    cell.starts_with('`')
        .then(|| code_spans(cell).into_iter().next())
        .flatten()
}

#[test]
fn the_mapping_reference_matches_the_code() {
    use billsync_activecampaign::ActiveCampaignSyncs;
    use billsync_events::SourceKind;
    use billsync_mapping::{Mapping, TRANSFORMS};
    use billsync_sources::sync::SyncDeclaration;

    let readme = readme();
    // Every transform is documented, and every example gives what the README says.
    let rows = table_after(&readme, "<!-- mapping: transforms -->");
    let mut documented: Vec<&str> = rows
        .iter()
        .filter_map(|row| leading_code(&row[0]))
        .collect();
    documented.sort_unstable();
    let mut known = TRANSFORMS.to_vec();
    known.sort_unstable();
    assert_eq!(
        documented, known,
        "the README's transforms are not the code's"
    );
    for row in &rows {
        let [_, expression, object, value] = row.as_slice() else {
            panic!("a row of four cells: {row:?}");
        };
        let expression = leading_code(expression).expect("an expression");
        let object: serde_json::Value =
            serde_json::from_str(leading_code(object).expect("an object")).expect("JSON");
        let expected: Option<serde_json::Value> =
            leading_code(value).map(|v| serde_json::from_str(v).expect("JSON"));
        let mapping = Mapping::parse([("field", expression)])
            .unwrap_or_else(|e| panic!("{expression:?} does not parse: {e}"));
        assert_eq!(
            mapping.apply(&object).remove("field"),
            expected,
            "{expression} over {object}"
        );
    }

    // The roots of each source, and ActiveCampaign's default fields, are the declared ones.
    let roots = table_after(&readme, "<!-- mapping: roots -->");
    for (source, marker) in [
        (SourceKind::Stripe, "<!-- mapping: defaults stripe -->"),
        (
            SourceKind::Chargebee,
            "<!-- mapping: defaults chargebee -->",
        ),
    ] {
        let declared = ActiveCampaignSyncs::mapping(source);
        let name = format!("{source:?}");
        let row = roots
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("no roots of {name}"));
        assert_eq!(code_spans(&row[1]), declared.roots, "the roots of {name}");
        let defaults = table_after(&readme, marker);
        let documented = Mapping::parse(defaults.iter().map(|row| {
            (
                leading_code(&row[0]).expect("a field"),
                leading_code(&row[1]).expect("an expression"),
            )
        }))
        .expect("the documented defaults parse");
        assert_eq!(
            documented, declared.defaults,
            "the default fields of {name}"
        );
    }

    // The example configures as it says: a field added, one overridden, one dropped.
    let example: toml::Table =
        toml::from_str(&block_after(&readme, "<!-- mapping: example -->")).expect("TOML");
    let table = example["syncs"]["mapping"]
        .as_table()
        .expect("[syncs.mapping]")
        .clone()
        .into_iter()
        .collect();
    let configured = ActiveCampaignSyncs::mapping(SourceKind::Chargebee)
        .configure(Path::new("README.md"), "syncs[0].mapping", &table)
        .expect("the example is a valid mapping");
    let fields: Vec<&str> = configured.fields().collect();
    assert!(fields.contains(&"Cb_phone"), "{fields:?}");
    assert!(!fields.contains(&"Cb_subscriptionMRR"), "{fields:?}");
    let company = configured.apply(&serde_json::json!({
        "customer": {"billing_address": {"company": "Acme"}},
        "subscription": null,
    }));
    assert_eq!(company["Cb_orgName"], "Acme");
}
