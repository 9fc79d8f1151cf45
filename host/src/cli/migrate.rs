//! `tally migrate`: move an embedded installation to PostgreSQL.

use anyhow::bail;

use crate::store::{Database, transfer};

/// Arguments of `tally migrate`.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The embedded store: `sqlite:PATH` (a data directory or its tally.db).
    /// Stop the host using it first.
    #[arg(long)]
    from: String,
    /// An empty PostgreSQL database: `postgres://user@host:port/database`.
    #[arg(long)]
    to: String,
}

/// Copies everything, checks the copy against the source, and commits.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let (Database::Sqlite(source), Database::Postgres(target)) =
        (Database::parse(&args.from), Database::parse(&args.to))
    else {
        bail!("tally migrate copies --from sqlite:PATH --to postgres://…");
    };
    if !source.exists() {
        bail!("{} does not exist", source.display());
    }
    let copied = transfer::sqlite_to_postgres(&source, &target).await?;
    for (table, rows) in &copied.tables {
        println!("{table:<22} {rows:>12} rows");
    }
    println!(
        "copied {} into {}: row counts and usage totals checked",
        source.display(),
        Database::Postgres(target)
    );
    Ok(())
}
