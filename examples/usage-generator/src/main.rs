//! Writes realistic sample usage to standard output, as NDJSON (the ingest
//! format of `POST /v1/usage`) or CSV (the format `tally import` also reads).

use std::io::{self, BufWriter, Write};

use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use tally_usage_generator::{Options, generate};

#[derive(Parser)]
#[command(about = "Generate realistic sample usage for tally")]
struct Args {
    /// Number of tenant subscriptions.
    #[arg(long, default_value_t = 24)]
    subscriptions: usize,
    /// Days of hourly usage.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// End of the usage (exclusive), RFC 3339; defaults to now (truncated to the hour).
    #[arg(long)]
    end: Option<DateTime<Utc>>,
    /// Share of records reported hours late.
    #[arg(long, default_value_t = 0.02)]
    late_share: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    format: Format,
    /// Leave out the reported time, as a live resource provider does.
    #[arg(long)]
    live: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Ndjson,
    Csv,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options {
        subscriptions: args.subscriptions,
        days: args.days,
        end: args.end.unwrap_or_else(Utc::now),
        late_share: args.late_share,
        seed: args.seed,
    };
    let now = Utc::now();
    let records = generate(&options).map(|mut record| {
        // Usage not reported yet by now is reported live: the host stamps it on arrival.
        if args.live || record.reported_time.is_some_and(|t| t > now) {
            record.reported_time = None;
        }
        record
    });
    let out = BufWriter::new(io::stdout().lock());
    match args.format {
        Format::Ndjson => write_ndjson(out, records),
        Format::Csv => write_csv(out, records),
    }
}

fn write_ndjson(
    mut out: impl Write,
    records: impl Iterator<Item = tally_usage_generator::UsageRecord>,
) -> anyhow::Result<()> {
    for record in records {
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn write_csv(
    out: impl Write,
    records: impl Iterator<Item = tally_usage_generator::UsageRecord>,
) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record([
        "eventId",
        "subscriptionId",
        "meterId",
        "resourceUri",
        "location",
        "tags",
        "additionalInfo",
        "quantity",
        "usageStartTime",
        "usageEndTime",
        "reportedTime",
    ])?;
    for r in records {
        csv.write_record([
            r.event_id,
            r.subscription_id,
            r.meter_id,
            r.resource_uri,
            r.location,
            serde_json::to_string(&r.tags)?,
            serde_json::to_string(&r.additional_info)?,
            r.quantity.to_string(),
            r.usage_start_time.to_rfc3339(),
            r.usage_end_time.to_rfc3339(),
            r.reported_time.map(|t| t.to_rfc3339()).unwrap_or_default(),
        ])?;
    }
    csv.flush()?;
    Ok(())
}
