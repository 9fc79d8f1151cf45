//! Usage, meters and tokens: ingest is all-or-nothing and idempotent,
//! aggregates are kept per reported window, and paging serves every row once.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tally::auth::{Principal, Role};
use tally::store::{AggregateQuery, NewToken, Store, StoreError, SubscriptionScope};
use tally::usage::{Granularity, Meter, UsageRecord, UsageRecordInput, ValidationContext};

use super::{all_rows, conformance, day, hour, pages};
use crate::support::{IP_METER, VM_METER};

conformance!(
    a_conflict_refuses_the_whole_request,
    a_retried_request_is_accepted_once,
    concurrent_requests_are_each_all_or_nothing,
    usage_is_reported_at_the_store_clock_unless_backfilled,
    aggregates_are_kept_per_reported_window,
    paging_serves_every_row_once_at_every_page_size,
    a_position_stays_valid_while_new_usage_arrives,
    a_query_covers_one_subscription_or_all,
    details_show_each_instance,
    a_meter_is_added_or_updated_by_id_ignoring_case,
    tokens_are_listed_resolved_and_revoked,
);

/// A record as a resource provider reports it: an hour of the VM meter by `vm1`.
#[derive(Clone)]
struct Usage(UsageRecordInput);

impl Usage {
    /// `quantity` used in hour `usage_hour` (see [`hour`]), not backfilled.
    fn new(subscription: &str, event: &str, quantity: f64, usage_hour: i64) -> Self {
        Usage(UsageRecordInput {
            event_id: Some(event.into()),
            subscription_id: Some(subscription.into()),
            meter_id: Some(VM_METER.into()),
            resource_uri: Some(format!("/subscriptions/{subscription}/vm1")),
            location: Some("local".into()),
            quantity: Some(quantity),
            usage_start_time: Some(hour(usage_hour).to_rfc3339()),
            usage_end_time: Some(hour(usage_hour + 1).to_rfc3339()),
            ..UsageRecordInput::default()
        })
    }

    /// Used until `end` instead of for one hour.
    fn until(mut self, end: DateTime<Utc>) -> Self {
        self.0.usage_end_time = Some(end.to_rfc3339());
        self
    }

    fn meter(mut self, id: &str) -> Self {
        self.0.meter_id = Some(id.into());
        self
    }

    /// Used by the resource `name` of its subscription.
    fn resource(mut self, name: &str) -> Self {
        let subscription = self.0.subscription_id.clone().unwrap();
        self.0.resource_uri = Some(format!("/subscriptions/{subscription}/{name}"));
        self
    }

    /// Backfilled: reported at `at`.
    fn reported(mut self, at: DateTime<Utc>) -> Self {
        self.0.reported_time = Some(at.to_rfc3339());
        self
    }
}

/// The records validated against the store's catalog, as the API does.
async fn records(store: &Arc<dyn Store>, usage: &[Usage]) -> Vec<UsageRecord> {
    let meters = store.fresh_meter_catalog().await.unwrap();
    let ctx = ValidationContext {
        meters: &meters,
        now: Utc::now(),
        may_set_reported_time: true,
        retention_cutoff: None,
    };
    usage
        .iter()
        .enumerate()
        .map(|(index, usage)| usage.0.clone().validate(index, &ctx).unwrap())
        .collect()
}

/// Ingests `usage`; panics unless the store accepts it.
async fn ingest(store: &Arc<dyn Store>, usage: &[Usage]) -> (usize, Vec<usize>) {
    let receipt = store.ingest(records(store, usage).await).await.unwrap();
    (receipt.accepted, receipt.duplicates)
}

/// All subscriptions' usage reported in `[start, end)`, summed over instances.
fn query(granularity: Granularity, start: DateTime<Utc>, end: DateTime<Utc>) -> AggregateQuery {
    AggregateQuery {
        scope: SubscriptionScope::All,
        reported_start: start,
        reported_end: end,
        granularity,
        show_details: false,
        page_size: 1_000,
    }
}

/// `(usage start, quantity)` of each row of `query`, in the order served.
async fn buckets(store: &Arc<dyn Store>, query: &AggregateQuery) -> Vec<(DateTime<Utc>, f64)> {
    all_rows(store, query)
        .await
        .iter()
        .map(|row| (row.usage_start, row.quantity))
        .collect()
}

/// The total quantity reported in hours `[start, end)`.
async fn total(store: &Arc<dyn Store>, start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    let rows = all_rows(store, &query(Granularity::Hourly, start, end)).await;
    rows.iter().map(|row| row.quantity).sum()
}

async fn a_conflict_refuses_the_whole_request(store: Arc<dyn Store>) {
    ingest(
        &store,
        &[Usage::new("sub-a", "e1", 1.0, 0).reported(hour(1))],
    )
    .await;
    let fresh = Usage::new("sub-new", "e2", 5.0, 0).reported(hour(1));
    let changed = Usage::new("sub-a", "e1", 2.0, 0).reported(hour(1));
    match store
        .ingest(records(&store, &[fresh.clone(), changed]).await)
        .await
    {
        Err(StoreError::Conflicts(conflicts)) => {
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
            assert_eq!(
                (conflicts[0].index, conflicts[0].field.as_str()),
                (1, "eventId")
            );
        }
        other => panic!("a changed record was not refused: {other:?}"),
    }
    // Nothing of the request was kept: not its new subscription, not its fresh record.
    assert!(!store.subscription_exists("sub-new").await.unwrap());
    assert_eq!(total(&store, hour(1), hour(2)).await, 1.0);
    assert_eq!(ingest(&store, &[fresh]).await, (1, vec![]));
}

async fn a_retried_request_is_accepted_once(store: Arc<dyn Store>) {
    let (e1, e2, e3) = (
        Usage::new("sub-a", "e1", 1.0, 0).reported(hour(1)),
        Usage::new("sub-a", "e2", 2.0, 0).reported(hour(1)),
        Usage::new("sub-a", "e3", 4.0, 0).reported(hour(1)),
    );
    assert_eq!(ingest(&store, &[e1.clone(), e2.clone()]).await, (2, vec![]));
    // A retry with one record more: the known ones are reported by index.
    assert_eq!(ingest(&store, &[e3, e1, e2]).await, (1, vec![1, 2]));
    // The same record twice in one request counts once.
    let e4 = Usage::new("sub-a", "e4", 8.0, 0).reported(hour(1));
    assert_eq!(ingest(&store, &[e4.clone(), e4]).await, (1, vec![1]));
    // Subscription ids ignore case, here too.
    let mut shouted = Usage::new("sub-a", "e4", 8.0, 0).reported(hour(1));
    shouted.0.subscription_id = Some("SUB-A".into());
    assert_eq!(ingest(&store, &[shouted]).await, (0, vec![0]));
    // Event ids are per subscription.
    let other = Usage::new("sub-b", "e1", 16.0, 0).reported(hour(1));
    assert_eq!(ingest(&store, &[other]).await, (1, vec![]));
    assert_eq!(total(&store, hour(1), hour(2)).await, 31.0);
}

/// A record of sub-o whose quantity is past what validation lets through,
/// so that a second one overflows the stored sum.
async fn huge(store: &Arc<dyn Store>, event: &str) -> Vec<UsageRecord> {
    let mut records = records(
        store,
        &[Usage::new("sub-o", event, 1.0, 0).reported(hour(1))],
    )
    .await;
    records[0].quantity = 1.7e308;
    records
}

/// Many requests at once, as group commit joins them in one transaction:
/// each is still stored whole or not at all, and retries stay duplicates.
async fn concurrent_requests_are_each_all_or_nothing(store: Arc<dyn Store>) {
    let base: Vec<Usage> = (0..10)
        .map(|j| Usage::new("sub-a", &format!("e{j}"), 1.0, 0).reported(hour(1)))
        .collect();
    assert_eq!(ingest(&store, &base).await, (10, vec![]));
    store.ingest(huge(&store, "big-1").await).await.unwrap();

    /// What a request must get.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Accepted(usize, Vec<usize>),
        Conflict,
    }
    let mut requests: Vec<(Vec<UsageRecord>, Expect)> = Vec::new();
    for i in 0..12 {
        // Fresh usage, 5 records of 1 each.
        let fresh: Vec<Usage> = (0..5)
            .map(|k| {
                Usage::new(&format!("sub-g{}", i % 3), &format!("g{i}-{k}"), 1.0, 0)
                    .reported(hour(1))
            })
            .collect();
        requests.push((records(&store, &fresh).await, Expect::Accepted(5, vec![])));
        // Fresh usage of 1,000 each beside a changed copy of a stored event: refused whole.
        let mut changed: Vec<Usage> = (0..4)
            .map(|k| Usage::new("sub-c", &format!("c{i}-{k}"), 1000.0, 0).reported(hour(1)))
            .collect();
        changed.push(Usage::new("sub-a", &format!("e{}", i % 10), 7.0, 0).reported(hour(1)));
        requests.push((records(&store, &changed).await, Expect::Conflict));
        // A retry of a stored event with one fresh record of 10.
        let retry = [
            base[i % 10].clone(),
            Usage::new("sub-a", &format!("r{i}"), 10.0, 0).reported(hour(1)),
        ];
        requests.push((records(&store, &retry).await, Expect::Accepted(1, vec![0])));
        // A sum that would overflow: refused whole, without taking the others along.
        requests.push((
            huge(&store, &format!("big-{}", i + 2)).await,
            Expect::Conflict,
        ));
    }
    let mut running = tokio::task::JoinSet::new();
    for (index, (records, expect)) in requests.into_iter().enumerate() {
        let store = store.clone();
        running.spawn(async move {
            let got = match store.ingest(records).await {
                Ok(receipt) => Expect::Accepted(receipt.accepted, receipt.duplicates),
                Err(StoreError::Conflicts(_)) => Expect::Conflict,
                Err(other) => panic!("request {index}: {other:?}"),
            };
            assert_eq!(got, expect, "request {index}");
        });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }
    // Base 10 + 12 × 5 fresh + 12 × 10 retried-with-one-more; nothing of the refused.
    let hours = all_rows(&store, &query(Granularity::Hourly, hour(1), hour(2))).await;
    let total: f64 = hours
        .iter()
        .filter(|row| row.quantity < 1e300)
        .map(|row| row.quantity)
        .sum();
    assert_eq!(total, 10.0 + 60.0 + 120.0);
    assert!(!store.subscription_exists("sub-c").await.unwrap());
    let daily = all_rows(&store, &query(Granularity::Daily, day(0), day(1))).await;
    let daily: f64 = daily
        .iter()
        .filter(|row| row.quantity < 1e300)
        .map(|row| row.quantity)
        .sum();
    assert_eq!(daily, total, "the daily rows agree with the hourly");
}

async fn usage_is_reported_at_the_store_clock_unless_backfilled(store: Arc<dyn Store>) {
    let before = store.clock().await.unwrap();
    let receipt = store
        .ingest(
            records(
                &store,
                &[
                    Usage::new("sub-a", "now", 1.0, 0),
                    Usage::new("sub-a", "backfilled", 2.0, 0).reported(hour(5)),
                ],
            )
            .await,
        )
        .await
        .unwrap();
    let after = store.clock().await.unwrap();
    let stamped = receipt.reported_time;
    assert!(
        before <= stamped && stamped <= after,
        "{before} {stamped} {after}"
    );
    let stamped_hour = Granularity::Hourly.start_of(Granularity::Hourly.bucket_of(stamped));
    let next_hour = stamped_hour + Duration::hours(1);
    assert_eq!(total(&store, stamped_hour, next_hour).await, 1.0);
    assert_eq!(total(&store, hour(5), hour(6)).await, 2.0);
    assert_eq!(total(&store, hour(6), stamped_hour).await, 0.0);
}

async fn aggregates_are_kept_per_reported_window(store: Arc<dyn Store>) {
    // Four hours across midnight, reported at 03:00 the next day; an
    // hour of that evening reported late, the day after.
    let evening = Usage::new("sub-a", "evening", 4.0, 22)
        .until(hour(26))
        .reported(hour(27));
    let late = Usage::new("sub-a", "late", 10.0, 23).reported(hour(53));
    ingest(&store, &[evening, late]).await;
    let (hourly, daily) = (Granularity::Hourly, Granularity::Daily);
    assert_eq!(
        buckets(&store, &query(hourly, day(1), day(2))).await,
        [
            (hour(22), 1.0),
            (hour(23), 1.0),
            (hour(24), 1.0),
            (hour(25), 1.0)
        ]
    );
    assert_eq!(
        buckets(&store, &query(hourly, day(1), day(3))).await,
        [
            (hour(22), 1.0),
            (hour(23), 11.0),
            (hour(24), 1.0),
            (hour(25), 1.0)
        ]
    );
    assert_eq!(
        buckets(&store, &query(daily, day(1), day(2))).await,
        [(day(0), 2.0), (day(1), 2.0)]
    );
    assert_eq!(
        buckets(&store, &query(daily, day(2), day(3))).await,
        [(day(0), 10.0)]
    );
    assert_eq!(
        buckets(&store, &query(daily, day(1), day(3))).await,
        [(day(0), 12.0), (day(1), 2.0)]
    );
    let rows = all_rows(&store, &query(daily, day(1), day(2))).await;
    assert!(
        rows.iter()
            .all(|row| row.usage_end == row.usage_start + Duration::days(1))
    );
}

async fn paging_serves_every_row_once_at_every_page_size(store: Arc<dyn Store>) {
    let mut usage = Vec::new();
    for subscription in ["sub-a", "sub-b", "sub-c"] {
        for usage_hour in 0..3 {
            for meter in [VM_METER, IP_METER] {
                for resource in ["vm1", "vm2"] {
                    // Each row reported in three hours: a page may end
                    // inside the stored rows that make one of its rows.
                    for (late, quantity) in [1.0, 0.5, 0.25].into_iter().enumerate() {
                        let event = format!("{usage_hour}-{meter}-{resource}-{late}");
                        usage.push(
                            Usage::new(subscription, &event, quantity, usage_hour)
                                .meter(meter)
                                .resource(resource)
                                .reported(hour(10 + late as i64)),
                        );
                    }
                }
            }
        }
    }
    ingest(&store, &usage).await;
    for (details, expected, quantity) in [(false, 18, 3.5), (true, 36, 1.75)] {
        let mut query = query(Granularity::Hourly, hour(10), hour(13));
        query.show_details = details;
        let whole = all_rows(&store, &query).await;
        assert_eq!(whole.len(), expected);
        assert!(
            whole.iter().all(|row| row.quantity == quantity),
            "{whole:?}"
        );
        let keys: HashSet<_> = whole
            .iter()
            .map(|row| {
                let instance = row.instance.as_ref().map(|instance| instance.key);
                (
                    row.subscription_id.clone(),
                    row.usage_start,
                    row.meter.key,
                    instance,
                )
            })
            .collect();
        assert_eq!(keys.len(), expected, "a row was served twice");
        for page_size in 1..=expected + 1 {
            query.page_size = page_size;
            let pages = pages(&store, &query).await;
            let (last, full) = pages.split_last().unwrap();
            assert!(full.iter().all(|page| page.rows.len() == page_size));
            assert!((1..=page_size).contains(&last.rows.len()), "{page_size}");
            let rows: Vec<_> = pages.into_iter().flat_map(|page| page.rows).collect();
            assert_eq!(rows, whole, "pages of {page_size}");
        }
    }
}

async fn a_position_stays_valid_while_new_usage_arrives(store: Arc<dyn Store>) {
    let usage: Vec<_> = (0..4)
        .map(|h| Usage::new("sub-a", &format!("h{h}"), 1.0, h).reported(hour(10)))
        .collect();
    ingest(&store, &usage).await;
    let mut query = query(Granularity::Hourly, hour(10), hour(11));
    query.page_size = 2;
    let first = store.aggregates(&query, None).await.unwrap();
    let served: Vec<_> = first.rows.iter().map(|row| row.usage_start).collect();
    assert_eq!(served, [hour(0), hour(1)]);

    // Usage arrives in the same reported window: before the position, after
    // it in an existing row, in a new hour, and in a new subscription.
    ingest(
        &store,
        &[
            Usage::new("sub-a", "more-h0", 1.0, 0).reported(hour(10)),
            Usage::new("sub-a", "more-h2", 1.0, 2).reported(hour(10)),
            Usage::new("sub-a", "h5", 1.0, 5).reported(hour(10)),
            Usage::new("sub-z", "z0", 1.0, 0).reported(hour(10)),
        ],
    )
    .await;
    query.page_size = 100;
    let rest = store.aggregates(&query, first.next).await.unwrap();
    assert_eq!(rest.next, None);
    let rest: Vec<_> = rest
        .rows
        .iter()
        .map(|row| (&*row.subscription_id, row.usage_start, row.quantity))
        .collect();
    assert_eq!(
        rest,
        [
            ("sub-a", hour(2), 2.0),
            ("sub-a", hour(3), 1.0),
            ("sub-a", hour(5), 1.0),
            ("sub-z", hour(0), 1.0),
        ]
    );
}

async fn a_query_covers_one_subscription_or_all(store: Arc<dyn Store>) {
    ingest(
        &store,
        &[
            Usage::new("sub-a", "a", 1.0, 0).reported(hour(1)),
            Usage::new("sub-b", "b", 2.0, 0).reported(hour(1)),
        ],
    )
    .await;
    let mut query = query(Granularity::Hourly, hour(1), hour(2));
    let subscriptions = async |query: &AggregateQuery| -> Vec<(String, f64)> {
        let rows = all_rows(&store, query).await;
        rows.into_iter()
            .map(|row| (row.subscription_id.to_string(), row.quantity))
            .collect()
    };
    assert_eq!(
        subscriptions(&query).await,
        [("sub-a".to_string(), 1.0), ("sub-b".to_string(), 2.0)]
    );
    query.scope = SubscriptionScope::One("sub-b".into());
    assert_eq!(subscriptions(&query).await, [("sub-b".to_string(), 2.0)]);
    // Subscription ids ignore case, and are served as first reported.
    query.scope = SubscriptionScope::One("SUB-A".into());
    assert_eq!(subscriptions(&query).await, [("sub-a".to_string(), 1.0)]);
    query.scope = SubscriptionScope::One("sub-unknown".into());
    assert!(subscriptions(&query).await.is_empty());
    assert!(store.subscription_exists("sub-a").await.unwrap());
    assert!(store.subscription_exists("SUB-A").await.unwrap());
    assert!(!store.subscription_exists("sub-unknown").await.unwrap());
}

async fn details_show_each_instance(store: Arc<dyn Store>) {
    ingest(
        &store,
        &[
            Usage::new("sub-a", "one", 1.0, 0)
                .resource("vm1")
                .reported(hour(1)),
            Usage::new("sub-a", "two", 2.0, 0)
                .resource("vm2")
                .reported(hour(1)),
        ],
    )
    .await;
    let mut query = query(Granularity::Hourly, hour(1), hour(2));
    let summed = all_rows(&store, &query).await;
    assert_eq!(summed.len(), 1);
    assert_eq!(
        (summed[0].quantity, summed[0].instance.clone()),
        (3.0, None)
    );

    query.show_details = true;
    let rows = all_rows(&store, &query).await;
    let mut instances: Vec<_> = rows
        .iter()
        .map(|row| {
            let instance = row.instance.as_ref().expect("details name the instance");
            assert_eq!(instance.location, "local");
            let resource = if instance.data_json.contains("/vm1") {
                "vm1"
            } else {
                "vm2"
            };
            (resource, row.quantity, instance.key)
        })
        .collect();
    instances.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(instances.len(), 2);
    assert_eq!((instances[0].0, instances[0].1), ("vm1", 1.0));
    assert_eq!((instances[1].0, instances[1].1), ("vm2", 2.0));
    assert_ne!(instances[0].2, instances[1].2);
}

async fn a_meter_is_added_or_updated_by_id_ignoring_case(store: Arc<dyn Store>) {
    let documented = store.meter_catalog().await.unwrap().all().len();
    assert_eq!(documented, tally::usage::meters::documented_meters().len());
    let meter = |id: &str, name: &str| Meter {
        key: 0,
        id: id.into(),
        name: name.into(),
        category: "Conformance".into(),
        unit: "1 Hour".into(),
        notes: String::new(),
    };
    let added = store
        .upsert_meter(meter("Conformance-Meter", "First"))
        .await
        .unwrap();
    let updated = store
        .upsert_meter(meter("CONFORMANCE-METER", "Second"))
        .await
        .unwrap();
    assert_eq!((updated.key, updated.name.as_str()), (added.key, "Second"));
    let catalog = store.fresh_meter_catalog().await.unwrap();
    assert_eq!(catalog.all().len(), documented + 1);
    let stored = catalog.resolve("conformance-meter").unwrap();
    assert_eq!((stored.key, stored.name.as_str()), (added.key, "Second"));
    // Usage may be reported against it at once.
    let usage = Usage::new("sub-a", "e", 1.0, 0)
        .meter("conformance-meter")
        .reported(hour(1));
    assert_eq!(ingest(&store, &[usage]).await, (1, vec![]));
    let rows = all_rows(&store, &query(Granularity::Hourly, hour(1), hour(2))).await;
    assert_eq!(rows[0].meter.key, added.key);
}

async fn tokens_are_listed_resolved_and_revoked(store: Arc<dyn Store>) {
    let token = |digest: u8, role: Role, subscriptions: &[&str]| NewToken {
        digest: [digest; 32],
        role,
        subscriptions: subscriptions.iter().map(|s| s.to_string()).collect(),
        description: format!("{} token", role.as_str()),
    };
    let operator = store
        .create_token(token(1, Role::Operator, &[]))
        .await
        .unwrap();
    let tenant = store
        .create_token(token(2, Role::Tenant, &["sub-t"]))
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.role, t.subscriptions, t.description))
        .collect();
    assert_eq!(
        listed,
        [
            (operator, Role::Operator, vec![], "operator token".into()),
            (
                tenant,
                Role::Tenant,
                vec!["sub-t".to_string()],
                "tenant token".into()
            ),
        ]
    );
    assert_eq!(
        store.principal([2; 32]).await.unwrap(),
        Some(Principal {
            role: Role::Tenant,
            subscriptions: vec!["sub-t".into()],
            token_id: Some(tenant),
        })
    );
    assert_eq!(store.principal([9; 32]).await.unwrap(), None);
    // A tenant's subscription is known before it reports usage.
    assert!(store.subscription_exists("sub-t").await.unwrap());

    assert!(store.revoke_token(operator).await.unwrap());
    assert!(!store.revoke_token(operator).await.unwrap());
    assert_eq!(store.principal([1; 32]).await.unwrap(), None);
    let left: Vec<_> = store.list_tokens().await.unwrap();
    assert_eq!(left.iter().map(|t| t.id).collect::<Vec<_>>(), [tenant]);
}
