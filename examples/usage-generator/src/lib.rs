//! Realistic, deterministic sample usage for tally.
//!
//! The generator plays the part of a private cloud's resource providers: it
//! emits one usage record per resource, meter and hour, in tally's ingest wire
//! format (`POST /v1/usage`). Subscriptions own VMs (with their disks and IP
//! addresses), storage accounts and App Service plans; most resources carry a
//! `cost-center` tag, a few do not (so chargeback has something to call
//! "unallocated"). Each record also carries the time it would have been
//! reported: a few minutes after its hour, or hours later for a small share of
//! late records.
//!
//! The same [`Options`] always produce the same records, so the demo, the tests
//! and the benchmarks can all recompute what they ingested.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Meter ids as the Azure Stack resource providers report them (their spelling,
/// hyphens and case vary, exactly as in the documented catalog).
pub mod meters {
    /// Base VM Size Hours (virtual core hours).
    pub const BASE_VM: &str = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5";
    /// Windows VM Size Hours (virtual core hours, Windows licence).
    pub const WINDOWS_VM: &str = "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A";
    /// Managed disk S10 (count of disks × hours).
    pub const DISK_S10: &str = "e5572fce-9f58-49d7-840c-b168c0f01fff";
    /// Managed disk P10 (count of disks × hours).
    pub const DISK_P10: &str = "5cfb1fed-0902-49e3-8217-9add946fd624";
    /// Block blob capacity (GB × hours).
    pub const BLOCK_BLOB_CAPACITY: &str = "09F8879E-87E9-4305-A572-4B7BE209F857";
    /// Blob transactions (count in 10,000s).
    pub const BLOB_TRANSACTIONS: &str = "43DAF82B-4618-444A-B994-40C23F7CD438";
    /// Static IP address usage (IP addresses).
    pub const STATIC_IP: &str = "F271A8A388C44D93956A063E1D2FA80B";
    /// Dynamic IP address usage (IP addresses).
    pub const DYNAMIC_IP: &str = "9E2739BA86744796B465F64674B822BA";
    /// App Service (virtual core hours).
    pub const APP_SERVICE: &str = "190C935E-9ADA-48FF-9AB8-56EA1CF9ADAA";
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of tenant subscriptions.
    pub subscriptions: usize,
    /// Days of hourly usage, ending at `end`.
    pub days: u32,
    /// End of the generated usage (exclusive); truncated to the hour.
    pub end: DateTime<Utc>,
    /// Share of records reported hours late (0.0–1.0).
    pub late_share: f64,
    /// Seed: the same seed gives the same records.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            subscriptions: 24,
            days: 30,
            end: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            late_share: 0.02,
            seed: 42,
        }
    }
}

/// One usage record in tally's ingest wire format.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecord {
    /// Unique per subscription: retries of the same record reuse it.
    pub event_id: String,
    pub subscription_id: String,
    pub meter_id: String,
    pub resource_uri: String,
    pub location: String,
    pub tags: Map<String, Value>,
    pub additional_info: Map<String, Value>,
    pub quantity: f64,
    pub usage_start_time: DateTime<Utc>,
    pub usage_end_time: DateTime<Utc>,
    /// When the record would have been reported (for backfills); a live
    /// resource provider leaves it out and the host stamps the time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_time: Option<DateTime<Utc>>,
}

/// A resource that emits one record per meter per hour.
#[derive(Debug, Clone)]
struct Resource {
    subscription_id: String,
    uri: String,
    location: &'static str,
    tags: Map<String, Value>,
    additional_info: Map<String, Value>,
    /// (meter id, quantity per hour)
    meters: Vec<(&'static str, f64)>,
}

const COST_CENTERS: [&str; 5] = [
    "finance",
    "engineering",
    "marketing",
    "research",
    "operations",
];
const LOCATIONS: [&str; 2] = ["local", "redmond"];
const VM_SIZES: [(&str, f64); 4] = [
    ("Standard_D2_v2", 2.0),
    ("Standard_D4_v2", 8.0),
    ("Standard_A1", 1.0),
    ("Standard_F8s", 8.0),
];

/// A subscription id that looks like the GUIDs Azure Stack hands out.
pub fn subscription_id(index: usize) -> String {
    format!(
        "{:08x}-5e1f-4a7b-9c3d-{:012x}",
        0x7a11_0000 + index,
        0x0bad_cafe_0000_u64 + index as u64
    )
}

/// Generates all records, ordered by hour, then subscription, then resource.
pub fn generate(options: &Options) -> impl Iterator<Item = UsageRecord> + use<> {
    let resources = build_resources(options);
    let end = truncate_to_hour(options.end);
    let hours = i64::from(options.days) * 24;
    let start = end - Duration::hours(hours);
    let late_share = options.late_share;
    let mut rng = fastrand::Rng::with_seed(options.seed ^ 0x5eed);
    (0..hours).flat_map(move |hour| {
        let usage_start = start + Duration::hours(hour);
        let usage_end = usage_start + Duration::hours(1);
        let epoch_hour = usage_start.timestamp() / 3600;
        let mut records = Vec::new();
        for (resource_index, resource) in resources.iter().enumerate() {
            for (meter_index, &(meter_id, per_hour)) in resource.meters.iter().enumerate() {
                // Busy hours use a little more; keeps totals interesting but deterministic.
                let jitter = 0.9 + 0.2 * rng.f64();
                let quantity = (per_hour * jitter * 1e4).round() / 1e4;
                let delay = if rng.f64() < late_share {
                    Duration::minutes(rng.i64(120..=30 * 60))
                } else {
                    Duration::minutes(rng.i64(2..=20))
                };
                records.push(UsageRecord {
                    // Numbered by the hour since the epoch, not since the
                    // set's start: sets with different ends never share an id.
                    event_id: format!("evt-{epoch_hour}-{resource_index}-{meter_index}"),
                    subscription_id: resource.subscription_id.clone(),
                    meter_id: meter_id.to_string(),
                    resource_uri: resource.uri.clone(),
                    location: resource.location.to_string(),
                    tags: resource.tags.clone(),
                    additional_info: resource.additional_info.clone(),
                    quantity,
                    usage_start_time: usage_start,
                    usage_end_time: usage_end,
                    reported_time: Some(usage_end + delay),
                });
            }
        }
        records
    })
}

fn build_resources(options: &Options) -> Vec<Resource> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut resources = Vec::new();
    for sub_index in 0..options.subscriptions {
        let sub = subscription_id(sub_index);
        let cost_center = COST_CENTERS[sub_index % COST_CENTERS.len()];
        let location = LOCATIONS[sub_index % LOCATIONS.len()];
        let group = format!("/subscriptions/{sub}/resourceGroups/rg-{cost_center}");
        let tags = |rng: &mut fastrand::Rng| {
            let mut tags = Map::new();
            // One resource in eight was created without the tag.
            if rng.u8(0..8) != 0 {
                tags.insert("cost-center".into(), json!(cost_center));
            }
            tags.insert("env".into(), json!(if rng.bool() { "prod" } else { "dev" }));
            tags
        };

        for vm in 0..rng.usize(2..=6) {
            let (size, cores) = VM_SIZES[rng.usize(..VM_SIZES.len())];
            let windows = rng.u8(0..3) == 0;
            let vm_tags = tags(&mut rng);
            let mut info = Map::new();
            info.insert("ServiceType".into(), json!(size));
            info.insert(
                "ImageType".into(),
                json!(if windows { "Windows" } else { "Linux" }),
            );
            let mut vm_meters = vec![(meters::BASE_VM, cores)];
            if windows {
                vm_meters.push((meters::WINDOWS_VM, cores));
            }
            let vm_uri =
                format!("{group}/providers/Microsoft.Compute/virtualMachines/vm-{sub_index}-{vm}");
            resources.push(Resource {
                subscription_id: sub.clone(),
                uri: vm_uri,
                location,
                tags: vm_tags.clone(),
                additional_info: info,
                meters: vm_meters,
            });
            let disk_meter = if rng.bool() {
                meters::DISK_P10
            } else {
                meters::DISK_S10
            };
            resources.push(Resource {
                subscription_id: sub.clone(),
                uri: format!(
                    "{group}/providers/Microsoft.Compute/disks/vm-{sub_index}-{vm}-osdisk"
                ),
                location,
                tags: vm_tags.clone(),
                additional_info: Map::new(),
                meters: vec![(disk_meter, 1.0)],
            });
            let ip_meter = if rng.u8(0..4) == 0 {
                meters::STATIC_IP
            } else {
                meters::DYNAMIC_IP
            };
            resources.push(Resource {
                subscription_id: sub.clone(),
                uri: format!(
                    "{group}/providers/Microsoft.Network/publicIPAddresses/vm-{sub_index}-{vm}-ip"
                ),
                location,
                tags: vm_tags,
                additional_info: Map::new(),
                meters: vec![(ip_meter, 1.0)],
            });
        }
        resources.push(Resource {
            subscription_id: sub.clone(),
            uri: format!("{group}/providers/Microsoft.Storage/storageAccounts/st{sub_index:03}"),
            location,
            tags: tags(&mut rng),
            additional_info: Map::new(),
            meters: vec![
                (meters::BLOCK_BLOB_CAPACITY, 50.0 + rng.f64() * 500.0),
                (meters::BLOB_TRANSACTIONS, 0.5 + rng.f64() * 4.0),
            ],
        });
        if sub_index % 3 == 0 {
            resources.push(Resource {
                subscription_id: sub.clone(),
                uri: format!("{group}/providers/Microsoft.Web/serverfarms/plan-{sub_index}"),
                location,
                tags: tags(&mut rng),
                additional_info: Map::new(),
                meters: vec![(meters::APP_SERVICE, f64::from(rng.u8(1..=4)))],
            });
        }
    }
    resources
}

fn truncate_to_hour(time: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = time.timestamp();
    Utc.timestamp_opt(seconds - seconds.rem_euclid(3600), 0)
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_options_give_same_records() {
        let options = Options {
            subscriptions: 3,
            days: 1,
            ..Options::default()
        };
        let a: Vec<_> = generate(&options).collect();
        let b: Vec<_> = generate(&options).collect();
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }

    #[test]
    fn records_are_hourly_and_reported_after_their_hour() {
        let options = Options {
            subscriptions: 4,
            days: 2,
            late_share: 0.5,
            ..Options::default()
        };
        let records: Vec<_> = generate(&options).collect();
        assert!(
            records
                .iter()
                .all(|r| r.usage_end_time - r.usage_start_time == Duration::hours(1))
        );
        assert!(
            records
                .iter()
                .all(|r| r.reported_time.unwrap() > r.usage_end_time)
        );
        let late = records
            .iter()
            .filter(|r| r.reported_time.unwrap() - r.usage_end_time > Duration::hours(1))
            .count();
        assert!(late > 0, "some records must be reported late");
        let untagged = records
            .iter()
            .filter(|r| !r.tags.contains_key("cost-center"))
            .count();
        assert!(untagged > 0 && untagged < records.len());
    }

    #[test]
    fn event_ids_are_unique_per_subscription_across_sets_with_different_ends() {
        let set = |end| Options {
            subscriptions: 2,
            days: 1,
            end,
            ..Options::default()
        };
        let first = Options::default().end;
        let ids: Vec<(String, String)> = generate(&set(first))
            .chain(generate(&set(first - Duration::days(3))))
            .map(|r| (r.subscription_id, r.event_id))
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
