//! `tally meters list|import`: the meter catalog, from the command line.
//!
//! `import` reads a CSV with the columns of the seed file
//! (`meter_id,meter_name,category,unit,notes`) and adds or updates each meter,
//! so an operator keeps the catalog as data next to the cloud's documentation.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::DataDir;
use crate::usage::meters::read_meters_csv;

/// `tally meters …`
#[derive(Subcommand)]
pub enum MetersCommand {
    /// Print the catalog as CSV.
    List {
        #[command(flatten)]
        data_dir: DataDir,
    },
    /// Add or update the meters of a CSV file (meter_id,meter_name,category,unit,notes).
    Import {
        #[command(flatten)]
        data_dir: DataDir,
        file: PathBuf,
    },
}

/// Runs `tally meters …`.
pub async fn run(command: MetersCommand) -> anyhow::Result<()> {
    match command {
        MetersCommand::List { data_dir } => {
            let store = data_dir.open_store().await?;
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record(["meter_id", "meter_name", "category", "unit", "notes"])?;
            for meter in store.meter_catalog().await?.all() {
                out.write_record([
                    &meter.id,
                    &meter.name,
                    &meter.category,
                    &meter.unit,
                    &meter.notes,
                ])?;
            }
            out.flush()?;
            Ok(())
        }
        MetersCommand::Import { data_dir, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let meters = read_meters_csv(&text)
                .with_context(|| format!("{} is not a meter CSV", file.display()))?;
            let store = data_dir.open_store().await?;
            let count = meters.len();
            for meter in meters {
                store.upsert_meter(meter).await?;
            }
            println!("{count} meters added or updated");
            Ok(())
        }
    }
}
