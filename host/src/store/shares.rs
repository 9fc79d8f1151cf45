//! A batch of fresh events' shares of the aggregate rows, summed per key and
//! kept in key order, for either store to upsert: one write per row touched
//! however many events add to it, in the order concurrent writers lock rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::usage::UsageRecord;
use crate::usage::split::{days_of, split_hourly};
use crate::usage::time::{Granularity, day_of_hour};

/// Keys are `[subscription, usage hour or day, meter, instance, reported hour
/// or day]`; each sum comes with the index of the first record that added to it.
#[derive(Default)]
pub(crate) struct Shares {
    pub hourly: BTreeMap<[i64; 5], (f64, usize)>,
    pub daily: BTreeMap<[i64; 5], (f64, usize)>,
    /// Per (subscription, reported hour): the first and last usage hours
    /// touched, and the records.
    pub bounds: BTreeMap<(i64, i64), (i64, i64, i64)>,
}

impl Shares {
    /// Adds the shares of the fresh events of a request's `records`, given
    /// as (index, subscription key, instance id); a record without a
    /// reported time was reported `now`.
    pub fn add_fresh(
        &mut self,
        records: &[UsageRecord],
        fresh: &[(usize, i64, i64)],
        now: DateTime<Utc>,
    ) {
        for &(index, subscription, instance) in fresh {
            let record = &records[index];
            let reported = record.reported_time.unwrap_or(now);
            self.add(index, subscription, instance, record, reported);
        }
    }

    /// Adds record `index`'s shares, reported at `reported`.
    fn add(
        &mut self,
        index: usize,
        subscription: i64,
        instance: i64,
        record: &UsageRecord,
        reported: DateTime<Utc>,
    ) {
        let reported_hour = Granularity::Hourly.bucket_of(reported);
        let hours = split_hourly(record.quantity, record.usage_start, record.usage_end);
        for &(hour, quantity) in &hours {
            let key = [
                subscription,
                hour,
                record.meter_key,
                instance,
                reported_hour,
            ];
            self.hourly.entry(key).or_insert((0.0, index)).0 += quantity;
        }
        let reported_day = day_of_hour(reported_hour);
        for (day, quantity) in days_of(&hours) {
            let key = [subscription, day, record.meter_key, instance, reported_day];
            self.daily.entry(key).or_insert((0.0, index)).0 += quantity;
        }
        let (first, last) = (hours[0].0, hours[hours.len() - 1].0);
        let bounds = self
            .bounds
            .entry((subscription, reported_hour))
            .or_insert((first, last, 0));
        *bounds = (bounds.0.min(first), bounds.1.max(last), bounds.2 + 1);
    }

    /// Whether every sum is finite (the batch's own; stored sums are the
    /// store's to check).
    pub fn is_finite(&self) -> bool {
        self.hourly
            .values()
            .chain(self.daily.values())
            .all(|(q, _)| q.is_finite())
    }
}
