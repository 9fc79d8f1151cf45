//! The web console end to end, in headless Chromium, and its main path in
//! headless Firefox: a real `tally serve` holding generated usage of three
//! subscriptions, an adapter that exports and one that fails, an operator
//! and a tenant token (and, for the statements scenarios, a monthly statement
//! adapter publishing to tenants, one of whose documents is then altered in
//! the database); the scenarios in `tests/browser/` (Node, with
//! playwright-core for Chromium and puppeteer-core for Firefox) sign in and
//! check what the pages show against the API, what a tenant can reach,
//! sign-out, the origin of every request and the CSP. They leave screenshots
//! of the main pages in `target/console-screenshots/`.

use crate::support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::DataDir;
use support::browser::{Browser, run_scenario};
use support::process::{Server, create_token, get_json, post_usage, tally_ok};
use support::{VM_METER, component_path, reported_by_now, sample, to_wire, world_of};
use tally_usage_generator::Options;

/// The installation that exports (chargeback-csv) and the one whose runs fail (hostile).
const ADAPTER: &str = "chargeback";
const FAILING_ADAPTER: &str = "fragile";
/// The installation that publishes monthly statements to tenants (statement).
const STATEMENT_ADAPTER: &str = "statement";

/// What `Console::install` writes in a manifest beside the installation's
/// name, the component's sha256 and contract version, no lag and every
/// subscription in scope.
struct Manifest<'a> {
    /// "daily" or "monthly".
    window: &'a str,
    /// The schedule's first window.
    start: DateTime<Utc>,
    /// Publishes its per-subscription documents to their tenants.
    publish_to_tenants: bool,
    /// The `[config]` table (TOML), if any.
    config: &'a str,
}

/// A host with usage, adapters and tokens, as the scenarios need it.
struct Console {
    // Dropped first: the host stops before its data goes.
    server: Server,
    data: DataDir,
    // Holds the host's config file.
    _work: tempfile::TempDir,
    operator: String,
    tenant: String,
    tenant_subscription: String,
    other_subscriptions: Vec<String>,
    today: NaiveDate,
}

impl Console {
    /// Starts `tally serve` (scheduler ticking every 250 ms) with five days
    /// of usage of three subscriptions up to today, `chargeback` exporting
    /// the last two closed days and `fragile` held by a failed run.
    async fn start() -> Self {
        let today = Utc::now().date_naive();
        Self::start_with(5, midnight(today)).await
    }

    /// [`Console::start`] with `days` of usage ending at `end` instead.
    async fn start_with(days: u32, end: DateTime<Utc>) -> Self {
        let data = DataDir::new();
        let work = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_str().unwrap();
        let today = Utc::now().date_naive();
        let subscriptions: Vec<String> =
            (0..3).map(tally_usage_generator::subscription_id).collect();
        let operator = create_token(data_dir, "operator");
        let tenant = tally_ok(&[
            "token",
            "create",
            "--data-dir",
            data_dir,
            "--role",
            "tenant",
            "--subscription",
            &subscriptions[0],
        ])
        .trim()
        .to_owned();
        let config = work.path().join("tally.toml");
        std::fs::write(&config, "[exports]\ntick = '250ms'\nretry_base = '1s'\n").unwrap();
        let server = Server::start_with(data.path(), &["--config", config.to_str().unwrap()]);

        let client = reqwest::Client::new();
        let records = reported_by_now(to_wire(&sample(&Options {
            subscriptions: subscriptions.len(),
            days,
            end,
            ..Options::default()
        })));
        for batch in records.chunks(5_000) {
            post_usage(&client, &server.base, &operator, batch)
                .await
                .unwrap();
        }

        let console = Console {
            server,
            data,
            _work: work,
            operator,
            tenant,
            tenant_subscription: subscriptions[0].clone(),
            other_subscriptions: subscriptions[1..].to_vec(),
            today,
        };
        let chargeback_config = format!(
            "[config]\ncurrency = 'EUR'\ngroup_by_tag = 'cost-center'\nrates = {{ '{VM_METER}' = 0.025 }}\n"
        );
        console
            .install(
                ADAPTER,
                "chargeback-csv",
                &Manifest {
                    window: "daily",
                    start: midnight(today - Days::new(2)),
                    publish_to_tenants: false,
                    config: &chargeback_config,
                },
            )
            .await;
        // Its runs fail for good: the run is refused a file it asks for.
        console
            .install(
                FAILING_ADAPTER,
                "hostile",
                &Manifest {
                    window: "daily",
                    start: midnight(today - Days::new(1)),
                    publish_to_tenants: false,
                    config: "[config]\nattack = 'read-file'\n",
                },
            )
            .await;
        console.wait_for_scheduled_runs(&client).await;
        console
    }

    /// Installs `component` as `name` through `POST /v1/adapters` (the
    /// manifest and the component's bytes, as an upload from elsewhere would
    /// send them), with `manifest`'s settings.
    async fn install(&self, name: &str, component: &str, manifest: &Manifest<'_>) {
        let wasm = std::fs::read(component_path(component)).unwrap();
        let sha256: String = Sha256::digest(&wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let Manifest {
            window,
            start,
            publish_to_tenants,
            config,
        } = manifest;
        // Written only when set: false is the default, and the only value a 0.1 world takes.
        let publish = if *publish_to_tenants {
            "publish_to_tenants = true\n"
        } else {
            ""
        };
        let manifest = format!(
            "name = '{name}'\nversion = '0.1.0'\nworld = 'tally:billing@{}'\nsha256 = '{sha256}'\n{publish}\
             [schedule]\nwindow = '{window}'\nlag = '0s'\nstart = '{}'\n\
             [scope]\nsubscriptions = ['*']\n{config}",
            world_of(&wasm),
            start.to_rfc3339()
        );
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest)
            .part(
                "component",
                reqwest::multipart::Part::bytes(wasm).file_name(format!("{component}.wasm")),
            );
        let response = reqwest::Client::new()
            .post(format!("{}/v1/adapters", self.server.base))
            .bearer_auth(&self.operator)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "installing {name}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Waits until the scheduler has exported every closed day of
    /// `chargeback` and a failed run holds `fragile`.
    async fn wait_for_scheduled_runs(&self, client: &reqwest::Client) {
        let started = Instant::now();
        loop {
            let installations = get_json(
                client,
                &format!("{}/v1/adapters", self.server.base),
                &self.operator,
            )
            .await;
            let find = |name: &str| -> Value {
                installations
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["name"] == name)
                    .cloned()
                    .unwrap_or_else(|| panic!("{name} is installed: {installations}"))
            };
            let exported = find(ADAPTER)["watermark"]
                .as_str()
                .and_then(|w| w.parse::<DateTime<Utc>>().ok())
                .is_some_and(|w| w >= midnight(self.today));
            let held = find(FAILING_ADAPTER)["heldBy"]["reason"].is_string();
            if exported && held {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the scheduler did not export {ADAPTER}'s closed days and fail {FAILING_ADAPTER}'s within a minute: {installations}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Installs `statement` as [`STATEMENT_ADAPTER`], publishing monthly
    /// statements to tenants from `first_month` on, and waits until the
    /// scheduler has exported every closed month.
    async fn install_statements(&self, first_month: NaiveDate) {
        let config = format!(
            "[config]\ncurrency = 'EUR'\nissuer = 'Example Cloud'\nrates = {{ '{VM_METER}' = 0.025 }}\n"
        );
        self.install(
            STATEMENT_ADAPTER,
            "statement",
            &Manifest {
                window: "monthly",
                start: midnight(first_month),
                publish_to_tenants: true,
                config: &config,
            },
        )
        .await;
        let exported_to = midnight(first_of_month(self.today));
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let installation = get_json(
                &client,
                &format!("{}/v1/adapters/{STATEMENT_ADAPTER}", self.server.base),
                &self.operator,
            )
            .await;
            let watermark = installation["watermark"]
                .as_str()
                .and_then(|w| w.parse::<DateTime<Utc>>().ok());
            if watermark.is_some_and(|w| w >= exported_to) {
                return;
            }
            assert!(
                installation["heldBy"]["status"] != "failed",
                "{STATEMENT_ADAPTER}'s run failed: {installation}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the scheduler did not export {STATEMENT_ADAPTER}'s closed months within a minute: {installation}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Rewrites, in the database, the CSV statement of the last other
    /// subscription with the bytes of the first other one's, in
    /// [`STATEMENT_ADAPTER`]'s one run. Answers the run's id and the name
    /// of the document altered.
    async fn alter_a_statement(&self) -> (i64, String) {
        let client = reqwest::Client::new();
        let base = format!("{}/v1/adapters/{STATEMENT_ADAPTER}/runs", self.server.base);
        let runs = get_json(&client, &base, &self.operator).await;
        let [run] = runs.as_array().unwrap().as_slice() else {
            panic!("{STATEMENT_ADAPTER} ran once (one closed month): {runs}");
        };
        let id = run["id"].as_i64().unwrap();
        let detail = get_json(&client, &format!("{base}/{id}"), &self.operator).await;
        let csv_of = |subscription: &str| -> String {
            detail["documents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| {
                    d["subscriptionId"] == subscription
                        && d["contentType"].as_str().unwrap().starts_with("text/csv")
                })
                .and_then(|d| d["name"].as_str())
                .unwrap_or_else(|| panic!("a CSV statement of {subscription}: {detail}"))
                .to_owned()
        };
        let source = csv_of(&self.other_subscriptions[0]);
        let altered = csv_of(self.other_subscriptions.last().unwrap());
        let changed = self.data.execute(&format!(
            "UPDATE run_documents SET bytes = (SELECT d.bytes FROM run_documents d \
                 WHERE d.run_id = {id} AND d.name = '{source}') \
             WHERE run_id = {id} AND name = '{altered}'"
        ));
        assert_eq!(changed, 1, "{altered} of run {id} is rewritten");
        (id, altered)
    }

    /// The settings every scenario gets: the host and the usage range (the
    /// three UTC days before today: the usage API refuses a range that ends
    /// in the future).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TALLY_URL", self.server.base.clone()),
            ("TALLY_USAGE_FROM", (self.today - Days::new(3)).to_string()),
            ("TALLY_USAGE_TO", (self.today - Days::new(1)).to_string()),
        ]
    }
}

/// The first day of `day`'s month.
fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap()
}

/// Midnight UTC of `day`.
fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_explores_usage_runs_an_adapter_and_signs_out() {
    let console = Console::start().await;
    let mut env = console.env();
    env.extend([
        ("TALLY_OPERATOR_TOKEN", console.operator.clone()),
        ("TALLY_ADAPTER", ADAPTER.to_owned()),
        ("TALLY_FAILING_ADAPTER", FAILING_ADAPTER.to_owned()),
        // Two days before the schedule's start: first exports.
        ("TALLY_RUN_FROM", (console.today - Days::new(4)).to_string()),
        ("TALLY_RUN_TO", (console.today - Days::new(3)).to_string()),
    ]);
    run_scenario(Browser::Chromium, "operator", &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_their_usage_and_nothing_else_and_signs_out() {
    let console = Console::start().await;
    let mut env = console.env();
    env.extend([
        ("TALLY_TENANT_TOKEN", console.tenant.clone()),
        (
            "TALLY_TENANT_SUBSCRIPTION",
            console.tenant_subscription.clone(),
        ),
        (
            "TALLY_OTHER_SUBSCRIPTIONS",
            console.other_subscriptions.join(","),
        ),
        ("TALLY_ADAPTERS", format!("{ADAPTER},{FAILING_ADAPTER}")),
    ]);
    run_scenario(Browser::Chromium, "tenant", &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_in_firefox_sees_their_usage_and_signs_out() {
    let console = Console::start().await;
    let mut env = console.env();
    env.extend([
        ("TALLY_TENANT_TOKEN", console.tenant.clone()),
        (
            "TALLY_TENANT_SUBSCRIPTION",
            console.tenant_subscription.clone(),
        ),
    ]);
    run_scenario(Browser::Firefox, "firefox", &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_downloads_a_statement_and_verify_matches_it_and_names_an_altered_one() {
    // Usage in the last three days of last month: one closed monthly window.
    let this_month = first_of_month(Utc::now().date_naive());
    let last_month = this_month - Months::new(1);
    let console = Console::start_with(3, midnight(this_month)).await;
    console.install_statements(last_month).await;
    let mut env = console.env();
    env.extend([
        ("TALLY_OPERATOR_TOKEN", console.operator.clone()),
        ("TALLY_TENANT_TOKEN", console.tenant.clone()),
        (
            "TALLY_TENANT_SUBSCRIPTION",
            console.tenant_subscription.clone(),
        ),
        (
            "TALLY_OTHER_SUBSCRIPTIONS",
            console.other_subscriptions.join(","),
        ),
        ("TALLY_STATEMENT_ADAPTER", STATEMENT_ADAPTER.to_owned()),
        // The window starting on the first of last month.
        ("TALLY_STATEMENT_FROM", last_month.to_string()),
        ("TALLY_STATEMENT_TO", last_month.to_string()),
    ]);
    run_scenario(Browser::Chromium, "statements", &env).await;

    // Another subscription's CSV statement rewritten behind the host's back
    // (with a third one's bytes): Verify must name it and where it differs.
    let (run, altered) = console.alter_a_statement().await;
    env.extend([
        ("TALLY_STATEMENT_RUN", run.to_string()),
        ("TALLY_ALTERED_DOCUMENT", altered),
    ]);
    run_scenario(Browser::Chromium, "verify-mismatch", &env).await;
}
