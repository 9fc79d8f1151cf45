//! Folding aggregate rows into the explorer's chart series and table, on
//! the server, so that the browser gets totals and never every row.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::store::{AggregateRow, Instance};
use crate::usage::Meter;

/// Most table rows (distinct group and meter pairs) one summary holds.
pub const MAX_TABLE_ROWS: usize = 10_000;

/// What the table's rows are grouped by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Subscription,
    Meter,
    /// The instance's location (`meterRegion`).
    Location,
    /// The value of one tag of the instance ("" where it has none).
    Tag(String),
}

impl GroupBy {
    /// Reads `subscription`, `meter`, `location` or `tag:KEY` (case-insensitive names).
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "subscription" => Some(GroupBy::Subscription),
            "meter" => Some(GroupBy::Meter),
            "location" => Some(GroupBy::Location),
            _ => {
                let key = text.get(4..).filter(|_| lower.starts_with("tag:"))?;
                (!key.is_empty()).then(|| GroupBy::Tag(key.to_owned()))
            }
        }
    }

    /// Whether grouping needs rows per instance.
    pub fn needs_instances(&self) -> bool {
        matches!(self, GroupBy::Location | GroupBy::Tag(_))
    }

    /// The name as given back.
    pub fn name(&self) -> String {
        match self {
            GroupBy::Subscription => "subscription".into(),
            GroupBy::Meter => "meter".into(),
            GroupBy::Location => "location".into(),
            GroupBy::Tag(key) => format!("tag:{key}"),
        }
    }
}

/// The fold's result, ready to render.
#[derive(Debug, Default)]
pub struct Folded {
    /// Usage-time bucket starts (seconds), ascending.
    pub buckets: Vec<i64>,
    /// Per meter: its total and its quantity per bucket, by meter name.
    pub meters: Vec<(Arc<Meter>, f64, Vec<f64>)>,
    /// The table: (group, meter, quantity), by group then meter name.
    pub rows: Vec<(String, Arc<Meter>, f64)>,
    /// Aggregate rows read.
    pub rows_read: u64,
}

/// Accumulates pages of rows.
pub struct Fold {
    group_by: GroupBy,
    meters: HashMap<i64, Arc<Meter>>,
    /// (meter key, bucket) → quantity.
    series: HashMap<(i64, i64), f64>,
    buckets: BTreeSet<i64>,
    /// (group, meter key) → quantity.
    table: HashMap<(String, i64), f64>,
    /// The tag value of each instance met, parsed once.
    tags: HashMap<i64, String>,
    rows_read: u64,
}

/// The table grew past [`MAX_TABLE_ROWS`].
#[derive(Debug)]
pub struct TooManyRows;

impl Fold {
    pub fn new(group_by: GroupBy) -> Self {
        Fold {
            group_by,
            meters: HashMap::new(),
            series: HashMap::new(),
            buckets: BTreeSet::new(),
            table: HashMap::new(),
            tags: HashMap::new(),
            rows_read: 0,
        }
    }

    /// Adds a page of rows.
    pub fn add(&mut self, rows: &[AggregateRow]) -> Result<(), TooManyRows> {
        for row in rows {
            self.rows_read += 1;
            let meter = row.meter.key;
            self.meters
                .entry(meter)
                .or_insert_with(|| row.meter.clone());
            let bucket = row.usage_start.timestamp();
            self.buckets.insert(bucket);
            *self.series.entry((meter, bucket)).or_default() += row.quantity;
            let group = self.group_of(row);
            let key = (group, meter);
            let full = self.table.len() >= MAX_TABLE_ROWS;
            match self.table.get_mut(&key) {
                Some(quantity) => *quantity += row.quantity,
                None if full => return Err(TooManyRows),
                None => {
                    self.table.insert(key, row.quantity);
                }
            }
        }
        Ok(())
    }

    fn group_of(&mut self, row: &AggregateRow) -> String {
        match &self.group_by {
            GroupBy::Subscription => row.subscription_id.to_string(),
            GroupBy::Meter => row.meter.id.clone(),
            GroupBy::Location => row
                .instance
                .as_ref()
                .map(|i| i.location.clone())
                .unwrap_or_default(),
            GroupBy::Tag(key) => match &row.instance {
                None => String::new(),
                Some(instance) => self
                    .tags
                    .entry(instance.key)
                    .or_insert_with(|| tag_value(instance, key))
                    .clone(),
            },
        }
    }

    /// The chart series and the sorted table.
    pub fn finish(self) -> Folded {
        let buckets: Vec<i64> = self.buckets.into_iter().collect();
        let index: HashMap<i64, usize> = buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
        let mut meters: Vec<(Arc<Meter>, f64, Vec<f64>)> = self
            .meters
            .values()
            .map(|meter| (meter.clone(), 0.0, vec![0.0; buckets.len()]))
            .collect();
        meters.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.0.id.cmp(&b.0.id)));
        let position: HashMap<i64, usize> = meters
            .iter()
            .enumerate()
            .map(|(i, m)| (m.0.key, i))
            .collect();
        for ((meter, bucket), quantity) in self.series {
            let entry = &mut meters[position[&meter]];
            entry.1 += quantity;
            entry.2[index[&bucket]] += quantity;
        }
        let mut rows: Vec<(String, Arc<Meter>, f64)> = self
            .table
            .into_iter()
            .map(|((group, meter), quantity)| (group, self.meters[&meter].clone(), quantity))
            .collect();
        rows.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.name.cmp(&b.1.name))
                .then(a.1.id.cmp(&b.1.id))
        });
        Folded {
            buckets,
            meters,
            rows,
            rows_read: self.rows_read,
        }
    }
}

/// The value of tag `key` in an instance's data ("" without one).
fn tag_value(instance: &Instance, key: &str) -> String {
    // `data_json` is the instanceData string as a JSON string literal.
    let data: Option<String> = serde_json::from_str(&instance.data_json).ok();
    let value: Option<serde_json::Value> = data.and_then(|d| serde_json::from_str(&d).ok());
    value
        .as_ref()
        .and_then(|v| v.get("Microsoft.Resources"))
        .and_then(|r| r.get("tags"))
        .and_then(|t| t.get(key))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn meter(key: i64, id: &str, name: &str) -> Arc<Meter> {
        Arc::new(Meter {
            key,
            id: id.into(),
            name: name.into(),
            category: String::new(),
            unit: "Hours".into(),
            notes: String::new(),
        })
    }

    fn row(
        subscription: &str,
        meter: &Arc<Meter>,
        hour: u32,
        quantity: f64,
        tags: &str,
    ) -> AggregateRow {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap();
        let data = format!(r#"{{"Microsoft.Resources":{{"tags":{tags}}}}}"#);
        AggregateRow {
            subscription_id: subscription.into(),
            meter: meter.clone(),
            usage_start: start,
            usage_end: start + chrono::Duration::hours(1),
            quantity,
            instance: Some(Arc::new(Instance {
                key: tags.len() as i64,
                location: "local".into(),
                data_json: serde_json::to_string(&data).unwrap(),
            })),
        }
    }

    #[test]
    fn totals_per_meter_and_groups_by_tag() {
        let (vm, disk) = (meter(1, "vm", "Compute"), meter(2, "disk", "Storage"));
        let mut fold = Fold::new(GroupBy::parse("tag:team").unwrap());
        fold.add(&[
            row("a", &vm, 0, 1.0, r#"{"team":"red"}"#),
            row("b", &vm, 1, 2.0, r#"{"team":"blue"}"#),
            row("a", &disk, 1, 5.0, r#"{}"#),
        ])
        .unwrap();
        let folded = fold.finish();
        assert_eq!(folded.buckets.len(), 2);
        let totals: Vec<_> = folded
            .meters
            .iter()
            .map(|m| (m.0.id.as_str(), m.1, m.2.clone()))
            .collect();
        assert_eq!(
            totals,
            [("vm", 3.0, vec![1.0, 2.0]), ("disk", 5.0, vec![0.0, 5.0])]
        );
        let table: Vec<_> = folded
            .rows
            .iter()
            .map(|r| (r.0.as_str(), r.1.id.as_str(), r.2))
            .collect();
        assert_eq!(
            table,
            [("", "disk", 5.0), ("blue", "vm", 2.0), ("red", "vm", 1.0)]
        );
        assert_eq!(folded.rows_read, 3);
    }

    #[test]
    fn group_names_parse() {
        assert_eq!(GroupBy::parse("Subscription"), Some(GroupBy::Subscription));
        assert_eq!(
            GroupBy::parse("TAG:Cost-Center"),
            Some(GroupBy::Tag("Cost-Center".into()))
        );
        assert_eq!(GroupBy::parse("tag:"), None);
        assert_eq!(GroupBy::parse("resource"), None);
    }
}
