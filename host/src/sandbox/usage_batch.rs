//! Pages of aggregate rows as the column batches the `usage` import hands
//! to adapters: each string once in the batch's dictionary, the rows'
//! columns indexes into it, the tags of an instance one shared tag set.
//!
//! Rows repeat their instance (once per meter and hour) and share their
//! subscription and meter with their neighbours, so the encoder finds what a
//! row refers to by identity (the instance's key, the `Arc` it shares) and
//! looks strings up by their text only the first time a batch meets them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use serde_json::Value;

use super::contract::tally::billing::usage::UsageBatch;
use crate::store::{AggregateRow, Instance};
use crate::usage::Meter;

/// Decoded instance fields an encoder keeps between batches (a cache,
/// emptied when full).
const MAX_CACHED_INSTANCE_BYTES: usize = 4 << 20;

/// Turns pages of aggregate rows into column batches. Keeps the resource
/// fields of each instance, decoded once (up to a bound) for the whole read.
#[derive(Default)]
pub struct BatchEncoder {
    instances: HashMap<i64, Arc<InstanceFields>>,
    cached_bytes: usize,
}

/// The fields of an instance that batches carry.
struct InstanceFields {
    resource_uri: String,
    location: String,
    tags: Vec<(String, String)>,
    additional_info: String,
}

impl InstanceFields {
    /// About what the cache holds for it: its text, a tag pair's two
    /// `String`s, the record and its map entry.
    fn bytes(&self) -> usize {
        let tags: usize = self.tags.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
        self.resource_uri.len() + self.location.len() + self.additional_info.len() + tags + 128
    }
}

/// An instance's columns in one batch: its strings' indexes and its tag set.
#[derive(Clone, Copy)]
struct InstanceColumns {
    resource_uri: u32,
    location: u32,
    additional_info: u32,
    tag_set: u32,
}

/// A batch's strings, each once, by text.
#[derive(Default)]
struct Dictionary {
    strings: Vec<String>,
    index: HashMap<String, u32>,
}

impl Dictionary {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&index) = self.index.get(text) {
            return index;
        }
        let index = self.strings.len() as u32;
        self.strings.push(text.to_owned());
        self.index.insert(text.to_owned(), index);
        index
    }
}

impl BatchEncoder {
    /// A column batch with a per-batch string dictionary.
    pub fn encode(&mut self, rows: &[AggregateRow]) -> wasmtime::Result<UsageBatch> {
        let mut dictionary = Dictionary::default();
        let mut batch = UsageBatch {
            strings: Vec::new(),
            subscription_id: Vec::with_capacity(rows.len()),
            meter_id: Vec::with_capacity(rows.len()),
            resource_uri: Vec::with_capacity(rows.len()),
            location: Vec::with_capacity(rows.len()),
            tags: Vec::with_capacity(rows.len()),
            additional_info: Vec::with_capacity(rows.len()),
            usage_start: Vec::with_capacity(rows.len()),
            usage_end: Vec::with_capacity(rows.len()),
            quantity: Vec::with_capacity(rows.len()),
            tag_sets: Vec::new(),
        };
        // What the batch already has, by identity: the previous row's
        // subscription (a page's rows of one subscription share its `Arc`),
        // meters by the address of the catalog's `Arc` (alive, so unique,
        // while `rows` is borrowed), instances by key.
        let mut subscription: Option<(&Arc<str>, u32)> = None;
        let mut meters: foldhash::HashMap<*const Meter, u32> = foldhash::HashMap::default();
        let mut instances: foldhash::HashMap<i64, InstanceColumns> = foldhash::HashMap::default();
        for row in rows {
            let instance = row
                .instance
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("a detailed row without instance"))?;
            let subscription_id = match subscription {
                Some((id, index)) if Arc::ptr_eq(id, &row.subscription_id) => index,
                _ => {
                    let index = dictionary.intern(&row.subscription_id);
                    subscription = Some((&row.subscription_id, index));
                    index
                }
            };
            let meter_id = *meters
                .entry(Arc::as_ptr(&row.meter))
                .or_insert_with(|| dictionary.intern(&row.meter.id));
            let columns = match instances.entry(instance.key) {
                Entry::Occupied(known) => *known.get(),
                Entry::Vacant(new) => {
                    let fields = self.fields_of(instance)?;
                    let columns = InstanceColumns {
                        resource_uri: dictionary.intern(&fields.resource_uri),
                        location: dictionary.intern(&fields.location),
                        additional_info: dictionary.intern(&fields.additional_info),
                        tag_set: batch.tag_sets.len() as u32,
                    };
                    let tags = (fields.tags.iter())
                        .map(|(k, v)| (dictionary.intern(k), dictionary.intern(v)))
                        .collect();
                    batch.tag_sets.push(tags);
                    *new.insert(columns)
                }
            };
            batch.subscription_id.push(subscription_id);
            batch.meter_id.push(meter_id);
            batch.resource_uri.push(columns.resource_uri);
            batch.location.push(columns.location);
            batch.additional_info.push(columns.additional_info);
            batch.tags.push(columns.tag_set);
            batch.usage_start.push(row.usage_start.timestamp());
            batch.usage_end.push(row.usage_end.timestamp());
            batch.quantity.push(row.quantity);
        }
        batch.strings = dictionary.strings;
        Ok(batch)
    }

    /// The decoded fields of `instance`, from the cache when it has them.
    fn fields_of(&mut self, instance: &Instance) -> wasmtime::Result<Arc<InstanceFields>> {
        if let Some(fields) = self.instances.get(&instance.key) {
            return Ok(fields.clone());
        }
        let fields = Arc::new(decode_instance(&instance.data_json)?);
        if self.cached_bytes > MAX_CACHED_INSTANCE_BYTES {
            self.instances.clear();
            self.cached_bytes = 0;
        }
        self.cached_bytes += fields.bytes();
        self.instances.insert(instance.key, fields.clone());
        Ok(fields)
    }
}

/// The resource fields of a stored `instanceData` literal.
fn decode_instance(data_json: &str) -> wasmtime::Result<InstanceFields> {
    let parse = || -> Option<InstanceFields> {
        let data: String = serde_json::from_str(data_json).ok()?;
        let value: Value = serde_json::from_str(&data).ok()?;
        let resources = value.get("Microsoft.Resources")?;
        let text = |key: &str| {
            resources
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let tags = resources
            .get("tags")
            .and_then(Value::as_object)
            .map(|tags| {
                tags.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let additional_info = resources
            .get("additionalInfo")
            .map(Value::to_string)
            .unwrap_or_else(|| "{}".into());
        Some(InstanceFields {
            resource_uri: text("resourceUri"),
            location: text("location"),
            tags,
            additional_info,
        })
    };
    parse().ok_or_else(|| wasmtime::format_err!("a stored instance is not valid instanceData"))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn meter(id: &str) -> Arc<Meter> {
        Arc::new(Meter {
            key: 1,
            id: id.into(),
            name: id.into(),
            category: "compute".into(),
            unit: "hours".into(),
            notes: String::new(),
        })
    }

    /// A stored instance: its `instanceData` as a JSON string literal.
    fn instance(key: i64, resources: serde_json::Value) -> Arc<Instance> {
        let data = serde_json::json!({ "Microsoft.Resources": resources }).to_string();
        Arc::new(Instance {
            key,
            location: String::new(),
            data_json: serde_json::to_string(&data).unwrap(),
        })
    }

    fn row(
        subscription: &str,
        meter: &Arc<Meter>,
        instance: &Arc<Instance>,
        hour: u32,
    ) -> AggregateRow {
        AggregateRow {
            subscription_id: subscription.into(),
            meter: meter.clone(),
            usage_start: at(18, hour),
            usage_end: at(18, hour + 1),
            quantity: f64::from(hour) + 0.5,
            instance: Some(instance.clone()),
        }
    }

    /// Each string of a batch is in its dictionary once; every row's columns
    /// index into it and read back as the row; a tag set is shared by the
    /// rows of its instance.
    #[test]
    fn a_batch_is_dictionary_encoded_and_reads_back_as_its_rows() {
        let vm = meter("vm-hours");
        let disk = meter("disk-gb");
        let web = instance(
            1,
            serde_json::json!({
                "resourceUri": "/subscriptions/sub-a/vms/web",
                "location": "local",
                "tags": { "costCentre": "cc-1", "env": "prod" },
                "additionalInfo": { "cores": 4 },
            }),
        );
        let bare = instance(
            2,
            serde_json::json!({ "resourceUri": "/subscriptions/sub-a/disks/d" }),
        );
        let rows = [
            row("sub-a", &vm, &web, 0),
            row("sub-a", &vm, &web, 1),
            row("sub-a", &disk, &bare, 0),
        ];
        let batch = BatchEncoder::default().encode(&rows).unwrap();

        let mut unique = batch.strings.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), batch.strings.len(), "{:?}", batch.strings);
        let text = |i: u32| batch.strings[i as usize].as_str();
        assert_eq!(
            batch
                .subscription_id
                .iter()
                .map(|&i| text(i))
                .collect::<Vec<_>>(),
            ["sub-a"; 3]
        );
        assert_eq!(
            batch.meter_id.iter().map(|&i| text(i)).collect::<Vec<_>>(),
            ["vm-hours", "vm-hours", "disk-gb"]
        );
        assert_eq!(text(batch.resource_uri[2]), "/subscriptions/sub-a/disks/d");
        assert_eq!(text(batch.location[0]), "local");
        assert_eq!(text(batch.additional_info[0]), r#"{"cores":4}"#);
        // Fields an instance lacks read as empty (additional info as `{}`).
        assert_eq!(
            (text(batch.location[2]), text(batch.additional_info[2])),
            ("", "{}")
        );

        assert_eq!(batch.tags, [0, 0, 1]);
        let tags: Vec<(&str, &str)> = batch.tag_sets[0]
            .iter()
            .map(|&(k, v)| (text(k), text(v)))
            .collect();
        assert_eq!(tags, [("costCentre", "cc-1"), ("env", "prod")]);
        assert!(batch.tag_sets[1].is_empty());

        assert_eq!(
            batch.usage_start,
            [at(18, 0), at(18, 1), at(18, 0)].map(|t| t.timestamp())
        );
        assert_eq!(batch.usage_end[1], at(18, 2).timestamp());
        assert_eq!(batch.quantity, [0.5, 1.5, 0.5]);
    }

    /// Rows sharing their subscription's and meter's `Arc` (as a page's rows
    /// do) and rows with their own copies of the same text get the same
    /// indexes: identity only saves the lookups.
    #[test]
    fn shared_and_copied_strings_get_one_index() {
        let vm = meter("vm-hours");
        let vm_copy = meter("vm-hours");
        let web = instance(1, serde_json::json!({ "resourceUri": "/vms/web" }));
        let shared = row("sub-a", &vm, &web, 0);
        let mut rows = vec![
            shared.clone(),
            shared.clone(),
            row("sub-a", &vm_copy, &web, 1),
        ];
        rows[1].usage_start = at(18, 5);
        let batch = BatchEncoder::default().encode(&rows).unwrap();
        assert_eq!(batch.subscription_id, [0, 0, 0]);
        assert_eq!(batch.meter_id, [1, 1, 1]);
        assert_eq!(batch.strings.iter().filter(|s| *s == "vm-hours").count(), 1);
        assert_eq!(batch.tags, [0, 0, 0]);
        assert_eq!(batch.usage_start[1], at(18, 5).timestamp());
    }

    /// A guest decodes each batch by itself: the dictionary starts afresh.
    #[test]
    fn each_batch_has_its_own_dictionary() {
        let vm = meter("vm-hours");
        let web = instance(
            1,
            serde_json::json!({ "resourceUri": "/vms/web", "tags": { "a": "b" } }),
        );
        let mut encoder = BatchEncoder::default();
        let first = encoder.encode(&[row("sub-a", &vm, &web, 0)]).unwrap();
        let second = encoder.encode(&[row("sub-b", &vm, &web, 1)]).unwrap();
        assert!(first.strings.iter().any(|s| s == "sub-a"));
        assert!(!second.strings.iter().any(|s| s == "sub-a"));
        assert_eq!(second.strings[second.subscription_id[0] as usize], "sub-b");
        assert_eq!(second.tag_sets.len(), 1);
        let (k, v) = second.tag_sets[0][0];
        assert_eq!(
            (&*second.strings[k as usize], &*second.strings[v as usize]),
            ("a", "b")
        );
    }

    #[test]
    fn a_row_without_a_readable_instance_fails_the_read() {
        let vm = meter("vm-hours");
        let mut without = row("sub-a", &vm, &instance(1, serde_json::json!({})), 0);
        without.instance = None;
        assert!(BatchEncoder::default().encode(&[without]).is_err());
        let broken = Arc::new(Instance {
            key: 3,
            location: String::new(),
            data_json: "\"not json\"".into(),
        });
        assert!(
            BatchEncoder::default()
                .encode(&[row("sub-a", &vm, &broken, 0)])
                .is_err()
        );
    }
}
