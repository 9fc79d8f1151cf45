//! The SQL of keyset paging, shared by the backends: both take `$n`
//! parameters (SQLite reads `$1` as a parameter named and numbered by its
//! first appearance, which here is its number).

use crate::usage::time::Granularity;

/// The first and last usage hour reported in `[$2, $3)` reported hours of subscription `$1`.
pub(crate) const USAGE_HOURS_SQL: &str =
    "SELECT MIN(min_usage_hour), MAX(max_usage_hour) FROM reported_hours
     WHERE subscription_key = $1 AND reported_hour >= $2 AND reported_hour < $3";

/// The grouped, keyset-paged SELECT for one subscription.
pub(crate) fn page_sql(granularity: Granularity, details: bool) -> String {
    let (table, bucket, reported) = match granularity {
        Granularity::Hourly => ("usage_hourly", "usage_hour", "reported_hour"),
        Granularity::Daily => ("usage_daily", "usage_day", "reported_day"),
    };
    if details {
        format!(
            "SELECT {bucket}, meter_key, SUM(quantity), instance_id
             FROM {table}
             WHERE subscription_key = $1 AND ({bucket}, meter_key, instance_id) > ($2, $3, $4)
               AND {bucket} <= $5 AND {reported} >= $6 AND {reported} < $7
             GROUP BY {bucket}, meter_key, instance_id
             ORDER BY {bucket}, meter_key, instance_id
             LIMIT $8"
        )
    } else {
        format!(
            "SELECT {bucket}, meter_key, SUM(quantity)
             FROM {table}
             WHERE subscription_key = $1 AND ({bucket}, meter_key) > ($2, $3)
               AND {bucket} <= $4 AND {reported} >= $5 AND {reported} < $6
             GROUP BY {bucket}, meter_key
             ORDER BY {bucket}, meter_key
             LIMIT $7"
        )
    }
}
