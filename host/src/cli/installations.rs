//! `tally adapters install|list|show|upgrade|enable|disable|remove|runs`:
//! manage the adapters of a running host (operator token).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::client::{HostArgs, HostClient};
use super::printable::printable;
use crate::exports::Manifest;

/// `tally adapters …`
#[derive(Subcommand)]
pub enum AdaptersCommand {
    /// Install an adapter from its manifest (the component is found by the
    /// manifest's `component` path, or given with --component).
    Install(InstallArgs),
    /// Upgrade an installed adapter to a new manifest and/or component.
    Upgrade(InstallArgs),
    /// List the installed adapters.
    List(HostArgs),
    /// Show an installed adapter, with its manifest.
    Show(NameArgs),
    /// Let the scheduler run an adapter's windows again.
    Enable(NameArgs),
    /// Stop starting runs of an adapter (a run in progress finishes).
    Disable(NameArgs),
    /// Remove an adapter with its runs and documents.
    Remove(NameArgs),
    /// List an adapter's runs, newest window first.
    Runs {
        #[command(flatten)]
        name: NameArgs,
        /// Most runs listed.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// A manifest, maybe a component, and the host.
#[derive(clap::Args)]
pub struct InstallArgs {
    /// The manifest (TOML).
    manifest: PathBuf,
    /// The component (.wasm); default: the manifest's `component`, relative to it.
    #[arg(long)]
    component: Option<PathBuf>,
    #[command(flatten)]
    host: HostArgs,
}

/// An installation's name and the host.
#[derive(clap::Args)]
pub struct NameArgs {
    /// The installation's name.
    name: String,
    #[command(flatten)]
    host: HostArgs,
}

/// Runs `tally adapters …`.
pub async fn run(command: AdaptersCommand) -> anyhow::Result<()> {
    match command {
        AdaptersCommand::Install(args) => install(args, false).await,
        AdaptersCommand::Upgrade(args) => install(args, true).await,
        AdaptersCommand::List(host) => {
            let client = HostClient::new(host);
            let list: Vec<Value> = client
                .json(client.request(Method::GET, "/v1/adapters")?)
                .await?;
            print_installations(&list);
            Ok(())
        }
        AdaptersCommand::Show(NameArgs { name, host }) => {
            let client = HostClient::new(host);
            let shown: Value = client
                .json(client.request(Method::GET, &format!("/v1/adapters/{name}"))?)
                .await?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
        AdaptersCommand::Enable(args) => set_enabled(args, "enable").await,
        AdaptersCommand::Disable(args) => set_enabled(args, "disable").await,
        AdaptersCommand::Remove(NameArgs { name, host }) => {
            let client = HostClient::new(host);
            client
                .send(client.request(Method::DELETE, &format!("/v1/adapters/{name}"))?)
                .await?;
            println!("removed {}, with its runs and documents", printable(&name));
            Ok(())
        }
        AdaptersCommand::Runs { name, limit } => {
            let client = HostClient::new(name.host);
            let path = format!("/v1/adapters/{}/runs?limit={limit}", name.name);
            let runs: Vec<Value> = client.json(client.request(Method::GET, &path)?).await?;
            print_runs(&runs);
            Ok(())
        }
    }
}

async fn install(args: InstallArgs, upgrade: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    // Checked here too, so that mistakes are named before anything is sent.
    let manifest = Manifest::parse(&text)
        .with_context(|| format!("{} is not a valid manifest", args.manifest.display()))?;
    if !upgrade {
        // "***" keeps a stored secret in an upgrade only.
        manifest.check_secrets_given()?;
    }
    let component = match (&args.component, &manifest.component) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(relative)) => Some(beside(&args.manifest, relative)),
        (None, None) => None,
    };
    let mut form = Form::new().part("manifest", Part::text(text).file_name("manifest.toml"));
    if let Some(path) = &component {
        let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        form = form.part("component", Part::bytes(wasm).file_name("component.wasm"));
    }
    let client = HostClient::new(args.host);
    let (method, path) = if upgrade {
        (Method::PUT, format!("/v1/adapters/{}", manifest.name))
    } else {
        (Method::POST, "/v1/adapters".to_owned())
    };
    let installed: Value = client
        .json(client.request(method, &path)?.multipart(form))
        .await?;
    println!(
        "{} {} ({} {}, tally:billing@{}, sha256 {}), {} windows after {} lag, watermark {}",
        if upgrade { "upgraded" } else { "installed" },
        printable(installed["name"].as_str().unwrap_or_default()),
        printable(installed["adapter"]["name"].as_str().unwrap_or_default()),
        printable(installed["adapter"]["version"].as_str().unwrap_or_default()),
        manifest.world_version,
        &manifest.sha256[..12],
        installed["window"].as_str().unwrap_or_default(),
        installed["lag"].as_str().unwrap_or_default(),
        installed["watermark"].as_str().unwrap_or_default(),
    );
    Ok(())
}

async fn set_enabled(args: NameArgs, action: &str) -> anyhow::Result<()> {
    let client = HostClient::new(args.host);
    let path = format!("/v1/adapters/{}/{action}", args.name);
    let installation: Value = client.json(client.request(Method::POST, &path)?).await?;
    println!(
        "{} is {}",
        args.name,
        if installation["enabled"] == true {
            "enabled"
        } else {
            "disabled"
        }
    );
    Ok(())
}

/// A path written in a manifest, relative to the manifest's folder.
fn beside(manifest: &Path, relative: &str) -> PathBuf {
    manifest
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(relative)
}

fn print_installations(list: &[Value]) {
    if list.is_empty() {
        println!("no adapters installed");
        return;
    }
    println!(
        "{:<24} {:<8} {:<28} {:<7} {:<20} HELD BY",
        "NAME", "ENABLED", "ADAPTER", "WINDOW", "WATERMARK"
    );
    for item in list {
        // What the adapter says it is, and why its run failed: its own words.
        let adapter = format!(
            "{} {}",
            printable(item["adapter"]["name"].as_str().unwrap_or_default()),
            printable(item["adapter"]["version"].as_str().unwrap_or_default())
        );
        let held = match &item["heldBy"] {
            Value::Null => "-".to_owned(),
            run => format!(
                "run {} ({})",
                run["id"],
                printable(run["reason"].as_str().unwrap_or_default())
            ),
        };
        println!(
            "{:<24} {:<8} {:<28} {:<7} {:<20} {held}",
            printable(item["name"].as_str().unwrap_or_default()),
            item["enabled"].to_string(),
            adapter,
            item["window"].as_str().unwrap_or_default(),
            item["watermark"].as_str().unwrap_or_default(),
        );
    }
}

/// Prints runs as a table (also used by `tally export run`).
pub fn print_runs(runs: &[Value]) {
    println!(
        "{:>6} {:<20} {:>3} {:<9} {:>3} {:>9} {:>10} {:>8}  REASON",
        "ID", "WINDOW", "REV", "STATUS", "TRY", "ROWS", "BYTES", "MS"
    );
    for run in runs {
        let figure = |name: &str| {
            run["figures"][name]
                .as_u64()
                .map_or("-".to_owned(), |v| v.to_string())
        };
        println!(
            "{:>6} {:<20} {:>3} {:<9} {:>3} {:>9} {:>10} {:>8}  {}",
            run["id"].to_string(),
            run["windowStart"].as_str().unwrap_or_default(),
            run["revision"].to_string(),
            run["status"].as_str().unwrap_or_default(),
            run["attempts"].to_string(),
            figure("rowsRead"),
            figure("bytesWritten"),
            figure("elapsedMs"),
            // An adapter's own words: no escape sequences reach the terminal.
            printable(run["reason"].as_str().unwrap_or_default()),
        );
    }
}

/// Fails unless every run succeeded, naming those that did not.
pub fn require_succeeded(runs: &[Value]) -> anyhow::Result<()> {
    let failed: Vec<String> = runs
        .iter()
        .filter(|run| run["status"] != "succeeded")
        .map(|run| format!("run {} ({})", run["id"], run["status"]))
        .collect();
    if !failed.is_empty() {
        bail!("not exported: {}", failed.join(", "));
    }
    Ok(())
}
