//! The usage domain: records as reported, their validation, meters and time buckets.
//!
//! Nothing here touches storage or HTTP; the store and the API both build on it.

pub mod batch;
pub mod files;
pub mod meters;
pub mod record;
pub mod split;
pub mod time;

pub use batch::{BatchError, BatchLimits};
pub use meters::{Meter, MeterCatalog, MeterKey};
pub use record::{RecordError, UsageRecord, UsageRecordInput, ValidationContext};
pub use time::Granularity;
