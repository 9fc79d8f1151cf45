//! Installations and export runs: each window exports once and in order, a
//! failed first export holds the windows after it, and only the claim that
//! holds a run may renew or finish it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tally::store::Store;
use tally::store::StoreError;
use tally::store::exports::{
    AdapterDescription, DocumentInfo, FinishedAttempt, Installation, Interrupted, LogLine,
    NewInstallation, Provenance, Run, RunEnd, RunFiguresRecord, RunLogRecord, RunRequestOutcome,
    RunStatus, StoredDocument, TenantDocumentsAfter, sha256_hex,
};
use tally::usage::Granularity;

use super::{conformance, day};

conformance!(
    components_are_kept_by_digest,
    installation_names_are_unique_ignoring_case,
    an_upgrade_keeps_the_installation_its_runs_and_watermark,
    removing_an_installation_deletes_its_runs_and_documents_only,
    a_window_is_scheduled_for_its_first_export_once,
    an_operator_request_queues_corrects_or_requeues_a_window,
    windows_are_claimed_one_at_a_time_in_order_per_installation,
    a_failed_first_export_holds_the_windows_after_it,
    a_disabled_installation_is_not_claimed,
    a_retrying_run_waits_for_its_next_attempt,
    a_run_released_by_a_stopping_host_keeps_its_attempts,
    only_the_claim_holding_a_run_renews_or_finishes_it,
    the_watermark_advances_over_consecutive_exported_windows,
    interrupted_runs_are_requeued_until_they_reach_max_attempts,
    published_runs_are_the_latest_succeeded_revision_of_each_window,
    a_run_reads_back_with_its_log_figures_and_documents,
    a_succeeded_run_keeps_its_provenance_and_the_config_it_ran_with,
    configs_are_kept_while_a_run_names_them,
    an_installation_publishes_to_tenants_as_installed_or_upgraded,
    a_subscription_lists_only_the_documents_published_to_it,
    a_subscription_pages_through_its_documents_newest_window_first,
    a_subscription_reads_and_joins_only_documents_it_owns,
);

/// The digest the test component is kept under (the store does not check it).
const COMPONENT: &str = "c0ffee00";
/// A lease no test outlives.
const LEASE: Duration = Duration::from_secs(3_600);

/// An installation of the test component named `name`, exporting from day 0.
fn new_installation(name: &str) -> NewInstallation {
    NewInstallation {
        name: name.into(),
        manifest: format!("name = \"{name}\"\n"),
        component_sha256: COMPONENT.into(),
        description: AdapterDescription {
            name: "conformance".into(),
            version: "1.0.0".into(),
            produces: vec!["invoice.csv".into()],
        },
        first_window: day(0),
        publish_to_tenants: false,
    }
}

/// An installation like [`install`]'s that publishes to tenants.
async fn install_publishing(store: &Arc<dyn Store>, name: &str) -> Installation {
    store
        .put_component(COMPONENT, b"\0asm opaque bytes".to_vec())
        .await
        .unwrap();
    let new = NewInstallation {
        publish_to_tenants: true,
        ..new_installation(name)
    };
    store.create_installation(new).await.unwrap()
}

/// How the test runs were made, the configuration told apart by `config`.
fn provenance(config: &str) -> Provenance {
    Provenance {
        world_version: "0.2.0".into(),
        component_sha256: COMPONENT.into(),
        config_sha256: sha256_hex(config.as_bytes()),
        config_digest: sha256_hex(config.replace("s3cret", "***").as_bytes()),
        granularity: Granularity::Daily,
        usage_sha256: sha256_hex(b"rows"),
    }
}

/// A success publishing `documents`, made with config `{}`.
fn succeeded_with(documents: Vec<(String, StoredDocument)>) -> FinishedAttempt {
    attempt(RunEnd::Succeeded {
        documents,
        provenance: provenance("{}"),
        config_json: "{}".into(),
    })
}

async fn install(store: &Arc<dyn Store>, name: &str) -> Installation {
    store
        .put_component(COMPONENT, b"\0asm opaque bytes".to_vec())
        .await
        .unwrap();
    store
        .create_installation(new_installation(name))
        .await
        .unwrap()
}

/// Installs `name` with the first exports of days `days` queued.
async fn install_with_windows(store: &Arc<dyn Store>, name: &str, days: &[i64]) -> Installation {
    let installation = install(store, name).await;
    let windows = days.iter().map(|&n| window(n)).collect();
    let queued = store
        .schedule_windows(installation.id, windows)
        .await
        .unwrap();
    assert_eq!(queued, days.len());
    installation
}

/// Day `n`, the window of a daily export.
fn window(n: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    (day(n), day(n + 1))
}

/// The next claimable run, if any.
async fn claim(store: &Arc<dyn Store>) -> Option<Run> {
    store.claim_run(Utc::now(), "host-a", LEASE).await.unwrap()
}

/// An attempt that ended as `end`.
fn attempt(end: RunEnd) -> FinishedAttempt {
    FinishedAttempt {
        end,
        figures: RunFiguresRecord::default(),
        log: RunLogRecord::default(),
    }
}

/// A successful attempt publishing `documents`, each holding its own name.
fn succeeded(documents: &[&str]) -> FinishedAttempt {
    let documents = documents
        .iter()
        .map(|name| {
            let document = StoredDocument::new("text/plain".into(), name.as_bytes().to_vec(), None);
            (name.to_string(), document)
        })
        .collect();
    succeeded_with(documents)
}

fn failed(reason: &str) -> FinishedAttempt {
    attempt(RunEnd::Failed {
        reason: reason.into(),
    })
}

/// Records `finished` for the claim that holds `run`; panics if refused.
async fn finish(store: &Arc<dyn Store>, run: &Run, finished: FinishedAttempt) {
    assert!(store.finish_run(run.id, run.claim, finished).await.unwrap());
}

/// Claims the next run, which must be `installation`'s of window `n`.
async fn claim_window(store: &Arc<dyn Store>, installation: &Installation, n: i64) -> Run {
    let run = claim(store).await.expect("a run to claim");
    assert_eq!(
        (run.installation_id, run.window_start),
        (installation.id, day(n))
    );
    assert_eq!(run.status, RunStatus::Running);
    run
}

/// Claims and publishes the next run, which must be of window `n`.
async fn export_window(store: &Arc<dyn Store>, installation: &Installation, n: i64) -> Run {
    let run = claim_window(store, installation, n).await;
    finish(store, &run, succeeded(&["invoice.csv"])).await;
    run
}

async fn watermark(store: &Arc<dyn Store>, installation: &Installation) -> DateTime<Utc> {
    let found = store.installation_by_id(installation.id).await.unwrap();
    found.unwrap().watermark
}

/// Requests runs of `windows`; returns the outcomes with the runs.
async fn request(
    store: &Arc<dyn Store>,
    installation: &Installation,
    windows: &[i64],
) -> Vec<(Run, RunRequestOutcome)> {
    let windows = windows.iter().map(|&n| window(n)).collect();
    store.request_runs(installation.id, windows).await.unwrap()
}

async fn components_are_kept_by_digest(store: Arc<dyn Store>) {
    store
        .put_component(COMPONENT, b"first".to_vec())
        .await
        .unwrap();
    store
        .put_component(COMPONENT, b"second".to_vec())
        .await
        .unwrap();
    let kept = store.component(COMPONENT).await.unwrap();
    assert_eq!(kept.as_deref(), Some(&b"first"[..]));
    assert_eq!(store.component("unknown").await.unwrap(), None);
}

async fn installation_names_are_unique_ignoring_case(store: Arc<dyn Store>) {
    let billing = install(&store, "Billing").await;
    assert_eq!((billing.enabled, billing.watermark), (true, day(0)));
    match store.create_installation(new_installation("billing")).await {
        Err(StoreError::Exists(_)) => {}
        other => panic!("a second 'billing' was installed: {other:?}"),
    }
    let found = store.installation("BILLING").await.unwrap();
    assert_eq!(found.as_ref(), Some(&billing));
    let by_id = store.installation_by_id(billing.id).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&billing));
    install(&store, "accounts").await;
    let names: Vec<_> = store
        .installations()
        .await
        .unwrap()
        .into_iter()
        .map(|installation| installation.name)
        .collect();
    assert_eq!(names, ["accounts", "Billing"]);
    assert_eq!(store.installation("unknown").await.unwrap(), None);
}

async fn an_upgrade_keeps_the_installation_its_runs_and_watermark(store: Arc<dyn Store>) {
    let installed = install(&store, "billing").await;
    store
        .schedule_windows(installed.id, vec![window(0)])
        .await
        .unwrap();
    export_window(&store, &installed, 0).await;

    store
        .put_component("d00d00", b"version 2".to_vec())
        .await
        .unwrap();
    let mut new = new_installation("billing");
    new.manifest = "name = \"billing\"\n# version 2\n".into();
    new.component_sha256 = "d00d00".into();
    new.description.version = "2.0.0".into();
    let upgraded = store.upgrade_installation(new).await.unwrap().unwrap();
    assert_eq!(
        (
            upgraded.id,
            &upgraded.uid,
            upgraded.watermark,
            upgraded.installed_at
        ),
        (installed.id, &installed.uid, day(1), installed.installed_at)
    );
    assert_eq!(upgraded.component_sha256, "d00d00");
    assert_eq!(upgraded.description.version, "2.0.0");
    assert!(upgraded.manifest.contains("version 2"));
    assert_eq!(store.runs(installed.id, 10).await.unwrap().len(), 1);
    let unknown = store.upgrade_installation(new_installation("unknown"));
    assert_eq!(unknown.await.unwrap(), None);

    let disabled = store.set_enabled("billing", false).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    let enabled = store.set_enabled("billing", true).await.unwrap().unwrap();
    assert!(enabled.enabled);
    assert_eq!(store.set_enabled("unknown", false).await.unwrap(), None);
}

async fn removing_an_installation_deletes_its_runs_and_documents_only(store: Arc<dyn Store>) {
    let (a, b) = (install(&store, "a").await, install(&store, "b").await);
    for installation in [&a, &b] {
        store
            .schedule_windows(installation.id, vec![window(0)])
            .await
            .unwrap();
    }
    // Installations run side by side: both windows are claimed before either finishes.
    let (first, second) = (claim(&store).await.unwrap(), claim(&store).await.unwrap());
    for run in [&first, &second] {
        finish(&store, run, succeeded(&["invoice.csv"])).await;
    }
    let (a_run, b_run) = if first.installation_id == a.id {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(b_run.installation_id, b.id);

    // A run of `a` in progress: once `a` is gone, its claim holds nothing.
    store.schedule_windows(a.id, vec![window(1)]).await.unwrap();
    let running = claim_window(&store, &a, 1).await;

    assert!(store.remove_installation("a").await.unwrap());
    assert!(!store.remove_installation("a").await.unwrap());
    let renewed = store.renew_lease(running.id, running.claim, LEASE);
    assert!(!renewed.await.unwrap());
    let finished = store.finish_run(running.id, running.claim, succeeded(&["invoice.csv"]));
    assert!(!finished.await.unwrap());
    assert_eq!(store.installation("a").await.unwrap(), None);
    assert_eq!(store.run(a.id, a_run.id).await.unwrap(), None);
    assert!(store.runs(a.id, 10).await.unwrap().is_empty());
    let document = store.run_document(a_run.id, "invoice.csv").await.unwrap();
    assert_eq!(document, None);

    let (run, _, documents) = store.run(b.id, b_run.id).await.unwrap().unwrap();
    assert_eq!((run.status, documents.len()), (RunStatus::Succeeded, 1));
    let document = store.run_document(b_run.id, "invoice.csv").await.unwrap();
    assert_eq!(document.unwrap().bytes, b"invoice.csv");
    assert_eq!(store.document_names(b.id).await.unwrap(), ["invoice.csv"]);
}

async fn a_window_is_scheduled_for_its_first_export_once(store: Arc<dyn Store>) {
    let installation = install(&store, "billing").await;
    let schedule = async |windows: &[i64]| {
        let windows = windows.iter().map(|&n| window(n)).collect();
        store
            .schedule_windows(installation.id, windows)
            .await
            .unwrap()
    };
    assert_eq!(schedule(&[0, 1]).await, 2);
    assert_eq!(schedule(&[0, 1, 2]).await, 1);
    assert_eq!(schedule(&[0, 1, 2]).await, 0);
    let runs = store.runs(installation.id, 10).await.unwrap();
    let seen: Vec<_> = runs
        .iter()
        .map(|run| (run.window_start, run.revision, run.status, run.attempts))
        .collect();
    let pending = |n| (day(n), 0, RunStatus::Pending, 0);
    assert_eq!(seen, [pending(2), pending(1), pending(0)], "newest first");
    assert!(
        runs.iter()
            .all(|run| run.window_end == run.window_start + chrono::Days::new(1))
    );
    assert_eq!(store.runs(installation.id, 2).await.unwrap(), runs[..2]);
}

async fn an_operator_request_queues_corrects_or_requeues_a_window(store: Arc<dyn Store>) {
    use RunRequestOutcome::*;
    let installation = install(&store, "billing").await;
    let outcome = |requested: &[(Run, RunRequestOutcome)]| {
        let (run, outcome) = &requested[0];
        (run.window_start, run.revision, run.status, *outcome)
    };

    let queued = request(&store, &installation, &[0]).await;
    assert_eq!(outcome(&queued), (day(0), 0, RunStatus::Pending, Queued));
    let again = request(&store, &installation, &[0]).await;
    assert_eq!((again[0].0.id, again[0].1), (queued[0].0.id, AlreadyQueued));
    let running = claim_window(&store, &installation, 0).await;
    let again = request(&store, &installation, &[0]).await;
    assert_eq!((again[0].0.id, again[0].1), (running.id, AlreadyQueued));
    finish(&store, &running, succeeded(&["invoice.csv"])).await;

    // An exported window: a correction, revision 1.
    let correction = request(&store, &installation, &[0]).await;
    assert_eq!(
        outcome(&correction),
        (day(0), 1, RunStatus::Pending, Correction)
    );
    assert_ne!(correction[0].0.id, running.id);

    // A failed run: the same run again, its attempts and reason reset.
    let failing = claim_window(&store, &installation, 0).await;
    finish(&store, &failing, failed("the billing API refused it")).await;
    let requeued = request(&store, &installation, &[0]).await;
    assert_eq!(
        outcome(&requeued),
        (day(0), 1, RunStatus::Pending, Requeued)
    );
    assert_eq!(requeued[0].0.id, failing.id);
    assert_eq!((requeued[0].0.attempts, &requeued[0].0.reason), (0, &None));

    // A retrying run: told not to wait out its backoff.
    let backing_off = claim_window(&store, &installation, 0).await;
    let later = RunEnd::Retry {
        reason: "busy".into(),
        at: Utc::now() + chrono::Duration::days(1),
    };
    finish(&store, &backing_off, attempt(later)).await;
    assert!(claim(&store).await.is_none(), "the retry waits");
    let requeued = request(&store, &installation, &[0]).await;
    assert_eq!(
        (requeued[0].0.id, requeued[0].1),
        (backing_off.id, Requeued)
    );
    assert_eq!(claim(&store).await.map(|run| run.id), Some(backing_off.id));

    // Several windows at once, each answered in order.
    let both = request(&store, &installation, &[2, 1]).await;
    let outcomes: Vec<_> = both.iter().map(|(run, o)| (run.window_start, *o)).collect();
    assert_eq!(outcomes, [(day(2), Queued), (day(1), Queued)]);
}

async fn windows_are_claimed_one_at_a_time_in_order_per_installation(store: Arc<dyn Store>) {
    let (a, b) = (install(&store, "a").await, install(&store, "b").await);
    // Queued out of order: window order wins over queue order.
    store.schedule_windows(a.id, vec![window(1)]).await.unwrap();
    store.schedule_windows(b.id, vec![window(0)]).await.unwrap();
    store.schedule_windows(a.id, vec![window(0)]).await.unwrap();

    let mut claimed = [claim(&store).await.unwrap(), claim(&store).await.unwrap()];
    claimed.sort_by_key(|run| run.installation_id);
    let seen: Vec<_> = claimed
        .iter()
        .map(|run| (run.installation_id, run.window_start))
        .collect();
    assert_eq!(seen, [(a.id, day(0)), (b.id, day(0))]);
    // a's day 1 waits for its day 0; b has nothing else.
    assert!(claim(&store).await.is_none());
    finish(&store, &claimed[0], succeeded(&[])).await;
    claim_window(&store, &a, 1).await;
}

async fn a_failed_first_export_holds_the_windows_after_it(store: Arc<dyn Store>) {
    use RunRequestOutcome::*;
    let installation = install_with_windows(&store, "billing", &[0, 1]).await;
    let first = claim_window(&store, &installation, 0).await;
    finish(&store, &first, failed("no price for a meter")).await;
    assert!(claim(&store).await.is_none(), "day 1 is held");
    let holding = store.holding_run(installation.id).await.unwrap().unwrap();
    assert_eq!((holding.id, holding.status), (first.id, RunStatus::Failed));
    assert_eq!(holding.reason.as_deref(), Some("no price for a meter"));
    assert_eq!(watermark(&store, &installation).await, day(0));

    // Requeued, it runs first and releases day 1.
    request(&store, &installation, &[0]).await;
    assert_eq!(store.holding_run(installation.id).await.unwrap(), None);
    let again = claim_window(&store, &installation, 0).await;
    assert_eq!(again.id, first.id);
    finish(&store, &again, succeeded(&["invoice.csv"])).await;

    // A failed correction holds nothing: the exported window stays exported.
    let correction = request(&store, &installation, &[0]).await;
    assert_eq!(correction[0].1, Correction);
    let corrected = claim_window(&store, &installation, 0).await;
    assert_eq!(corrected.revision, 1);
    finish(&store, &corrected, failed("rejected")).await;
    claim_window(&store, &installation, 1).await;
    assert_eq!(store.holding_run(installation.id).await.unwrap(), None);
}

async fn a_disabled_installation_is_not_claimed(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[0]).await;
    store.set_enabled("billing", false).await.unwrap();
    assert!(claim(&store).await.is_none());
    store.set_enabled("billing", true).await.unwrap();
    claim_window(&store, &installation, 0).await;
}

async fn a_retrying_run_waits_for_its_next_attempt(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[0, 1]).await;
    let first = claim_window(&store, &installation, 0).await;
    // Claims are asked "at" chosen times: no waiting on the real clock.
    let retry_at = day(40);
    let retry = RunEnd::Retry {
        reason: "HTTP 503".into(),
        at: retry_at,
    };
    finish(&store, &first, attempt(retry)).await;
    let waiting = &store.runs(installation.id, 10).await.unwrap()[1];
    assert_eq!(waiting.status, RunStatus::Retrying);
    assert_eq!(waiting.next_attempt_at, Some(retry_at));
    assert_eq!(waiting.reason.as_deref(), Some("HTTP 503"));

    let before = retry_at - chrono::Duration::milliseconds(1);
    let claim_at = async |now| store.claim_run(now, "host-a", LEASE).await.unwrap();
    assert!(claim_at(before).await.is_none(), "nor does day 1 pass it");
    let second = claim_at(retry_at).await.unwrap();
    assert_eq!((second.id, second.attempts), (first.id, 2));
}

async fn a_run_released_by_a_stopping_host_keeps_its_attempts(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[0]).await;
    let first = claim_window(&store, &installation, 0).await;
    assert_eq!(first.attempts, 1);
    let released = RunEnd::Released {
        reason: "the host stopped (SIGTERM); retried at once".into(),
        at: day(0),
    };
    finish(&store, &first, attempt(released)).await;
    let waiting = &store.runs(installation.id, 10).await.unwrap()[0];
    assert_eq!(waiting.status, RunStatus::Retrying);
    assert_eq!(waiting.attempts, 0, "the stop does not use up an attempt");
    let again = store.claim_run(day(0), "host-b", LEASE).await.unwrap();
    let again = again.expect("the released run is claimable at once");
    assert_eq!((again.id, again.attempts), (first.id, 1));
    assert!(again.claim > first.claim, "a new claim fences the old one");
}

async fn only_the_claim_holding_a_run_renews_or_finishes_it(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[0]).await;
    let first = claim_window(&store, &installation, 0).await;
    assert!(
        store
            .renew_lease(first.id, first.claim, LEASE)
            .await
            .unwrap()
    );
    let live = store.requeue_interrupted_runs(8, Interrupted::LeaseEnded);
    assert_eq!(live.await.unwrap(), 0, "a live lease is not taken over");

    // Its host is taken for gone; another claim takes the run over.
    let requeued = store.requeue_interrupted_runs(8, Interrupted::AllRunning);
    assert_eq!(requeued.await.unwrap(), 1);
    let second = claim_window(&store, &installation, 0).await;
    assert_eq!((second.id, second.attempts), (first.id, 2));
    assert!(second.claim > first.claim);

    // The first claim's late renewal and finish record nothing.
    assert!(
        !store
            .renew_lease(first.id, first.claim, LEASE)
            .await
            .unwrap()
    );
    let stale = store.finish_run(first.id, first.claim, succeeded(&["invoice.csv"]));
    assert!(!stale.await.unwrap());
    let (run, _, documents) = store.run(installation.id, first.id).await.unwrap().unwrap();
    assert_eq!((run.status, documents), (RunStatus::Running, vec![]));
    assert_eq!(watermark(&store, &installation).await, day(0));

    assert!(
        store
            .renew_lease(second.id, second.claim, LEASE)
            .await
            .unwrap()
    );
    finish(&store, &second, succeeded(&["invoice.csv"])).await;
    assert_eq!(watermark(&store, &installation).await, day(1));
    // A finished run is no one's to renew or finish again.
    assert!(
        !store
            .renew_lease(second.id, second.claim, LEASE)
            .await
            .unwrap()
    );
    let again = store.finish_run(second.id, second.claim, failed("late"));
    assert!(!again.await.unwrap());
}

async fn the_watermark_advances_over_consecutive_exported_windows(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[1, 2]).await;
    // Day 1 exported while day 0 is not: the watermark stays at day 0.
    export_window(&store, &installation, 1).await;
    assert_eq!(watermark(&store, &installation).await, day(0));
    // Day 0 goes first; its export carries the watermark over day 1 too.
    store
        .schedule_windows(installation.id, vec![window(0)])
        .await
        .unwrap();
    export_window(&store, &installation, 0).await;
    assert_eq!(watermark(&store, &installation).await, day(2));
    export_window(&store, &installation, 2).await;
    assert_eq!(watermark(&store, &installation).await, day(3));
}

async fn interrupted_runs_are_requeued_until_they_reach_max_attempts(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[0]).await;
    let requeue = async || {
        store
            .requeue_interrupted_runs(2, Interrupted::AllRunning)
            .await
            .unwrap()
    };
    assert_eq!(requeue().await, 0, "nothing is running");
    let first = claim_window(&store, &installation, 0).await;
    assert_eq!(requeue().await, 1);
    let queued = &store.runs(installation.id, 1).await.unwrap()[0];
    assert_eq!((queued.id, queued.status), (first.id, RunStatus::Pending));

    // Its second start is its last.
    let second = claim_window(&store, &installation, 0).await;
    assert_eq!(second.attempts, 2);
    assert_eq!(requeue().await, 0);
    let holding = store.holding_run(installation.id).await.unwrap().unwrap();
    assert_eq!((holding.id, holding.status), (first.id, RunStatus::Failed));
    assert!(holding.reason.is_some());
    assert!(claim(&store).await.is_none());
}

async fn published_runs_are_the_latest_succeeded_revision_of_each_window(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[0, 1, 2]).await;
    let publish = async |n, documents: &[&str]| {
        let run = claim_window(&store, &installation, n).await;
        finish(&store, &run, succeeded(documents)).await;
    };
    publish(0, &["invoice.csv"]).await;
    publish(1, &["invoice.csv", "summary.json"]).await;
    publish(2, &["summary.json"]).await;
    // Day 0 corrected; day 1's correction not run yet.
    request(&store, &installation, &[0]).await;
    publish(0, &["invoice.csv"]).await;
    request(&store, &installation, &[1]).await;

    let published = async |document: &str, from: i64, to: i64| -> Vec<(DateTime<Utc>, u32)> {
        let runs = store.published_runs(installation.id, document, day(from), day(to));
        let runs = runs.await.unwrap();
        runs.iter()
            .map(|run| (run.window_start, run.revision))
            .collect()
    };
    assert_eq!(
        published("invoice.csv", 0, 3).await,
        [(day(0), 1), (day(1), 0)]
    );
    assert_eq!(published("invoice.csv", 1, 3).await, [(day(1), 0)]);
    assert_eq!(
        published("summary.json", 0, 3).await,
        [(day(1), 0), (day(2), 0)]
    );
    assert_eq!(published("summary.json", 0, 2).await, [(day(1), 0)]);
    assert!(published("unknown.csv", 0, 3).await.is_empty());
    assert_eq!(
        store.document_names(installation.id).await.unwrap(),
        ["invoice.csv", "summary.json"]
    );
}

async fn a_run_reads_back_with_its_log_figures_and_documents(store: Arc<dyn Store>) {
    let installation = install(&store, "billing").await;
    let other = install(&store, "other").await;
    store
        .schedule_windows(installation.id, vec![window(0), window(1)])
        .await
        .unwrap();
    let run = claim_window(&store, &installation, 0).await;
    let document = |content_type: &str, bytes: &[u8]| {
        StoredDocument::new(content_type.into(), bytes.to_vec(), None)
    };
    let figures = RunFiguresRecord {
        rows_read: 3,
        rows_written: 2,
        bytes_written: 10,
        requests_sent: 1,
        elapsed_ms: 7,
        peak_memory_bytes: 1 << 20,
    };
    let log = RunLogRecord {
        lines: vec![
            LogLine {
                level: "info",
                message: "rated 3 rows".into(),
            },
            LogLine {
                level: "stderr",
                message: "ünïcode".into(),
            },
        ],
        dropped: 2,
    };
    let finished = FinishedAttempt {
        figures: figures.clone(),
        log: log.clone(),
        ..succeeded_with(vec![
            ("summary.json".into(), document("application/json", b"{}")),
            ("invoice.csv".into(), document("text/csv", b"a,b\n1,2\n")),
        ])
    };
    finish(&store, &run, finished).await;

    let (read, read_log, documents) = store.run(installation.id, run.id).await.unwrap().unwrap();
    assert_eq!((read.status, read.attempts), (RunStatus::Succeeded, 1));
    assert_eq!((read.figures, read.reason), (Some(figures), None));
    assert!(read.finished_at.is_some());
    assert_eq!(read_log, log);
    let info = |name: &str, content_type: &str, bytes: &[u8]| DocumentInfo {
        name: name.into(),
        content_type: content_type.into(),
        bytes: bytes.len() as u64,
        subscription_id: None,
        sha256: Some(sha256_hex(bytes)),
    };
    assert_eq!(
        documents,
        [
            info("invoice.csv", "text/csv", b"a,b\n1,2\n"),
            info("summary.json", "application/json", b"{}")
        ]
    );
    let stored = store.run_document(run.id, "invoice.csv").await.unwrap();
    assert_eq!(stored, Some(document("text/csv", b"a,b\n1,2\n")));
    assert_eq!(store.run_document(run.id, "missing").await.unwrap(), None);
    // A run is read through its own installation only.
    assert_eq!(store.run(other.id, run.id).await.unwrap(), None);

    // A failed run keeps its reason and publishes nothing.
    let next = claim_window(&store, &installation, 1).await;
    finish(&store, &next, failed("quota exceeded")).await;
    let (read, _, documents) = store.run(installation.id, next.id).await.unwrap().unwrap();
    assert_eq!(read.status, RunStatus::Failed);
    assert_eq!(read.reason.as_deref(), Some("quota exceeded"));
    assert!(documents.is_empty());
    assert_eq!(read.provenance, None, "a failed run made nothing");
}

/// A document for `owner` (`None`: the operator's) holding `text`.
fn owned(name: &str, owner: Option<&str>, text: &str) -> (String, StoredDocument) {
    let document = StoredDocument::new(
        "text/csv".into(),
        text.as_bytes().to_vec(),
        owner.map(str::to_owned),
    );
    (name.into(), document)
}

async fn a_succeeded_run_keeps_its_provenance_and_the_config_it_ran_with(store: Arc<dyn Store>) {
    let installation = install_with_windows(&store, "billing", &[0, 1]).await;
    let run = claim_window(&store, &installation, 0).await;
    assert_eq!(run.provenance, None, "nothing made yet");
    let config = r#"{"currency":"EUR","token":"s3cret"}"#;
    let made = provenance(config);
    let end = RunEnd::Succeeded {
        documents: vec![
            owned("invoice.csv", None, "total\n3\n"),
            owned("statement-sub-a.csv", Some("Sub-A"), "a\n1\n"),
        ],
        provenance: made.clone(),
        config_json: config.into(),
    };
    finish(&store, &run, attempt(end)).await;

    let (read, _, documents) = store.run(installation.id, run.id).await.unwrap().unwrap();
    assert_eq!(read.provenance.as_ref(), Some(&made));
    let listed = &store.runs(installation.id, 10).await.unwrap();
    assert_eq!(listed[0].provenance, None, "day 1 is not exported yet");
    assert_eq!(listed[1].provenance.as_ref(), Some(&made));
    let config_read = store.run_config(&made.config_sha256).await.unwrap();
    assert_eq!(config_read.as_deref(), Some(config));
    assert_eq!(store.run_config("unknown").await.unwrap(), None);

    let owners: Vec<_> = documents
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.subscription_id.as_deref(),
                d.sha256.clone(),
            )
        })
        .collect();
    assert_eq!(
        owners,
        [
            ("invoice.csv", None, Some(sha256_hex(b"total\n3\n"))),
            (
                "statement-sub-a.csv",
                Some("Sub-A"),
                Some(sha256_hex(b"a\n1\n"))
            ),
        ]
    );
    let stored = store.run_document(run.id, "statement-sub-a.csv");
    let stored = stored.await.unwrap().unwrap();
    assert_eq!(stored.subscription_id.as_deref(), Some("Sub-A"));
    assert_eq!(stored.sha256, sha256_hex(b"a\n1\n"));

    // Another run with the same config keeps one copy of it.
    let next = claim_window(&store, &installation, 1).await;
    let again = RunEnd::Succeeded {
        documents: vec![],
        provenance: made.clone(),
        config_json: config.into(),
    };
    finish(&store, &next, attempt(again)).await;
    let (read, _, _) = store.run(installation.id, next.id).await.unwrap().unwrap();
    assert_eq!(read.provenance, Some(made));
}

async fn configs_are_kept_while_a_run_names_them(store: Arc<dyn Store>) {
    let (a, b) = (install(&store, "a").await, install(&store, "b").await);
    for installation in [&a, &b] {
        store
            .schedule_windows(installation.id, vec![window(0)])
            .await
            .unwrap();
    }
    let (own, shared) = (r#"{"only":"a"}"#, r#"{"shared":true}"#);
    let made_with = |config: &str| {
        attempt(RunEnd::Succeeded {
            documents: vec![],
            provenance: provenance(config),
            config_json: config.into(),
        })
    };
    // a's first export runs with its own config, b's with the shared one.
    for _ in 0..2 {
        let run = claim(&store).await.unwrap();
        let config = if run.installation_id == a.id {
            own
        } else {
            shared
        };
        finish(&store, &run, made_with(config)).await;
    }
    // a's correction runs with the shared config.
    request(&store, &a, &[0]).await;
    let correction = claim_window(&store, &a, 0).await;
    finish(&store, &correction, made_with(shared)).await;
    let kept = async |config: &str| {
        let digest = sha256_hex(config.as_bytes());
        store.run_config(&digest).await.unwrap().is_some()
    };
    assert!(kept(own).await && kept(shared).await);

    // a's configs go with it (they hold secrets), but the one b's run names stays.
    assert!(store.remove_installation("a").await.unwrap());
    assert!(!kept(own).await);
    assert!(kept(shared).await);
}

async fn an_installation_publishes_to_tenants_as_installed_or_upgraded(store: Arc<dyn Store>) {
    let quiet = install(&store, "quiet").await;
    assert!(!quiet.publish_to_tenants);
    let publishing = install_publishing(&store, "statement").await;
    assert!(publishing.publish_to_tenants);
    let upgraded = store
        .upgrade_installation(NewInstallation {
            publish_to_tenants: true,
            ..new_installation("quiet")
        })
        .await
        .unwrap()
        .unwrap();
    assert!(upgraded.publish_to_tenants);
    let found = store.installation("statement").await.unwrap().unwrap();
    assert!(found.publish_to_tenants);
    let upgraded = store.upgrade_installation(new_installation("statement"));
    assert!(!upgraded.await.unwrap().unwrap().publish_to_tenants);
}

/// Publishes `documents` as the next run of `installation`, which must be of window `n`.
async fn publish(
    store: &Arc<dyn Store>,
    installation: &Installation,
    n: i64,
    documents: Vec<(String, StoredDocument)>,
) -> Run {
    let run = claim_window(store, installation, n).await;
    finish(store, &run, succeeded_with(documents)).await;
    run
}

async fn a_subscription_lists_only_the_documents_published_to_it(store: Arc<dyn Store>) {
    let statement = install_publishing(&store, "statement").await;
    let quiet = install(&store, "quiet").await;
    for installation in [&statement, &quiet] {
        let windows = vec![window(0), window(1), window(2)];
        store
            .schedule_windows(installation.id, windows)
            .await
            .unwrap();
    }
    let documents = |n: i64| {
        vec![
            owned("all.csv", None, &format!("day {n}")),
            owned("sub-a.csv", Some("Sub-A"), &format!("a {n}")),
            owned("sub-b.csv", Some("sub-b"), &format!("b {n}")),
        ]
    };
    let mut claimed = Vec::new();
    for n in 0..3 {
        // The two installations' windows are claimed side by side.
        for _ in 0..2 {
            let run = claim(&store).await.unwrap();
            finish(&store, &run, succeeded_with(documents(n))).await;
            claimed.push(run);
        }
    }
    // Day 1 corrected without sub-a's document; day 2's correction failed.
    request(&store, &statement, &[1]).await;
    publish(&store, &statement, 1, vec![owned("all.csv", None, "fixed")]).await;
    request(&store, &statement, &[2]).await;
    let failing = claim_window(&store, &statement, 2).await;
    finish(&store, &failing, failed("no")).await;

    let listed = async |subscription: &str, from: i64, to: i64| {
        store
            .tenant_documents(subscription, day(from), day(to), None, 100)
            .await
            .unwrap()
    };
    let seen: Vec<_> = listed("SUB-A", 0, 3)
        .await
        .into_iter()
        .map(|d| {
            (
                d.adapter,
                d.run.window_start,
                d.run.revision,
                d.document.name,
                d.document.subscription_id,
            )
        })
        .collect();
    let of = |n: i64| {
        (
            "statement".to_owned(),
            day(n),
            0,
            "sub-a.csv".to_owned(),
            Some("Sub-A".to_owned()),
        )
    };
    assert_eq!(seen, [of(2), of(0)], "newest window first, day 1 corrected");
    let first = &listed("sub-a", 2, 3).await[0];
    assert_eq!(first.document.sha256, Some(sha256_hex(b"a 2")));
    assert_eq!(first.document.bytes, 3);
    assert_eq!(first.run.provenance, Some(provenance("{}")));
    assert_eq!(listed("sub-a", 1, 2).await, vec![]);
    assert_eq!(listed("sub-b", 0, 3).await.len(), 2);
    assert_eq!(listed("sub-c", 0, 3).await, vec![]);
    // The operator's documents are no subscription's.
    assert_eq!(listed("", 0, 3).await, vec![]);
}

async fn a_subscription_pages_through_its_documents_newest_window_first(store: Arc<dyn Store>) {
    let (a, b) = (
        install_publishing(&store, "a").await,
        install_publishing(&store, "b").await,
    );
    for installation in [&a, &b] {
        store
            .schedule_windows(installation.id, vec![window(0), window(1)])
            .await
            .unwrap();
    }
    for _ in 0..4 {
        let run = claim(&store).await.unwrap();
        let documents = vec![
            owned("z.csv", Some("sub-a"), "z"),
            owned("b.csv", Some("sub-a"), "b"),
            owned("B.csv", Some("sub-a"), "B"),
        ];
        finish(&store, &run, succeeded_with(documents)).await;
    }
    let all = store
        .tenant_documents("sub-a", day(0), day(2), None, 100)
        .await
        .unwrap();
    let key = |d: &tally::store::exports::TenantDocument| {
        (
            d.run.window_start,
            d.adapter.clone(),
            d.document.name.clone(),
        )
    };
    let expected: Vec<_> = [1, 0]
        .into_iter()
        .flat_map(|n| {
            ["a", "b"].into_iter().flat_map(move |adapter| {
                ["B.csv", "b.csv", "z.csv"]
                    .into_iter()
                    .map(move |name| (day(n), adapter.to_owned(), name.to_owned()))
            })
        })
        .collect();
    assert_eq!(all.iter().map(key).collect::<Vec<_>>(), expected);

    // Pages of 5 come to the same, whatever the page boundaries cut.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .tenant_documents("sub-a", day(0), day(2), after.clone(), 5)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(TenantDocumentsAfter {
            window_start: last.run.window_start,
            installation_id: last.run.installation_id,
            name: last.document.name.clone(),
        });
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

async fn a_subscription_reads_and_joins_only_documents_it_owns(store: Arc<dyn Store>) {
    let statement = install_publishing(&store, "statement").await;
    let quiet = install(&store, "quiet").await;
    for installation in [&statement, &quiet] {
        store
            .schedule_windows(installation.id, vec![window(0), window(1)])
            .await
            .unwrap();
    }
    let mut runs = Vec::new();
    for n in 0..2 {
        for _ in 0..2 {
            let run = claim(&store).await.unwrap();
            let documents = vec![
                owned("all.csv", None, "all"),
                owned("mine.csv", Some("sub-a"), &format!("a{n}")),
            ];
            finish(&store, &run, succeeded_with(documents)).await;
            runs.push(run);
        }
    }
    let of = |installation: &Installation, n: usize| {
        runs.iter()
            .filter(|run| run.installation_id == installation.id)
            .nth(n)
            .unwrap()
            .clone()
    };
    let (first, quiet_first) = (of(&statement, 0), of(&quiet, 0));
    let read = async |installation: &Installation, run: &Run, name: &str, subscription: &str| {
        store
            .tenant_run_document(installation.id, run.id, name, subscription)
            .await
            .unwrap()
            .map(|document| document.bytes)
    };
    assert_eq!(
        read(&statement, &first, "mine.csv", "SUB-A").await,
        Some(b"a0".to_vec())
    );
    assert_eq!(read(&statement, &first, "mine.csv", "sub-b").await, None);
    assert_eq!(read(&statement, &first, "all.csv", "sub-a").await, None);
    assert_eq!(read(&quiet, &quiet_first, "mine.csv", "sub-a").await, None);
    // A run is read through its own installation only.
    assert_eq!(read(&quiet, &first, "mine.csv", "sub-a").await, None);

    let joined = async |installation: &Installation, name: &str, subscription: &str| {
        let runs = store.tenant_published_runs(installation.id, name, subscription, day(0), day(2));
        let runs = runs.await.unwrap();
        runs.iter().map(|run| run.window_start).collect::<Vec<_>>()
    };
    assert_eq!(
        joined(&statement, "mine.csv", "Sub-A").await,
        [day(0), day(1)]
    );
    assert!(joined(&statement, "mine.csv", "sub-b").await.is_empty());
    assert!(joined(&statement, "all.csv", "sub-a").await.is_empty());
    assert!(joined(&quiet, "mine.csv", "sub-a").await.is_empty());

    let published = async |installation: &Installation, name: &str, subscription: &str| {
        store
            .tenant_document_published(installation.id, name, subscription)
            .await
            .unwrap()
    };
    assert!(published(&statement, "mine.csv", "SUB-a").await);
    assert!(!published(&statement, "mine.csv", "sub-b").await);
    assert!(!published(&statement, "all.csv", "sub-a").await);
    assert!(!published(&quiet, "mine.csv", "sub-a").await);
}
