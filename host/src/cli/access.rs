//! `tally access grant|revoke|list`: give an identity provider's subject
//! tally subscriptions, take them back, list what is given. On the store
//! directly, as `tally token` is.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};

use super::DataDir;
use crate::store::access::check_grant;

/// `tally access …`
#[derive(Subcommand)]
pub enum AccessCommand {
    /// Grant subscriptions to a subject of an identity provider (again: no change).
    Grant(GrantArgs),
    /// Revoke subscriptions granted to a subject.
    Revoke(GrantArgs),
    /// List the grants, by issuer, subject and subscription.
    List {
        #[command(flatten)]
        data_dir: DataDir,
    },
}

/// Who is granted what.
#[derive(Args)]
pub struct GrantArgs {
    #[command(flatten)]
    data_dir: DataDir,
    /// The identity provider, exactly as its tokens' `iss` names it.
    #[arg(long)]
    issuer: String,
    /// Who, exactly as the issuer's tokens name them (the subject claim, e.g. Entra's `oid`).
    #[arg(long)]
    subject: String,
    /// A subscription (repeat for several).
    #[arg(long = "subscription", required = true)]
    subscriptions: Vec<String>,
}

impl GrantArgs {
    /// Refuses the command before any change when a value is out of bounds.
    fn check(&self) -> anyhow::Result<()> {
        for subscription in &self.subscriptions {
            check_grant(&self.issuer, &self.subject, subscription)
                .map_err(|invalid| anyhow!("--{} {}", invalid.field, invalid.problem))?;
        }
        Ok(())
    }
}

/// Runs `tally access …`.
pub async fn run(command: AccessCommand) -> anyhow::Result<()> {
    match command {
        AccessCommand::Grant(args) => {
            args.check()?;
            let store = args.data_dir.open_store().await?;
            for subscription in &args.subscriptions {
                let grant = store
                    .grant(&args.issuer, &args.subject, subscription)
                    .await?;
                println!(
                    "granted {} to '{}' from '{}'",
                    grant.subscription, grant.subject, grant.issuer
                );
            }
            Ok(())
        }
        AccessCommand::Revoke(args) => {
            args.check()?;
            let store = args.data_dir.open_store().await?;
            let mut missing = Vec::new();
            for subscription in &args.subscriptions {
                if store
                    .revoke_grant(&args.issuer, &args.subject, subscription)
                    .await?
                {
                    println!(
                        "revoked {subscription} from '{}' of '{}'",
                        args.subject, args.issuer
                    );
                } else {
                    missing.push(subscription.as_str());
                }
            }
            if !missing.is_empty() {
                bail!(
                    "'{}' from '{}' has no grant of {}",
                    args.subject,
                    args.issuer,
                    missing.join(", ")
                );
            }
            Ok(())
        }
        AccessCommand::List { data_dir } => {
            let store = data_dir.open_store().await?;
            println!(
                "{:<20}  {:<36}  {:<36}  issuer",
                "created", "subscription", "subject"
            );
            for grant in store.grants().await? {
                println!(
                    "{:<20}  {:<36}  {:<36}  {}",
                    grant.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    grant.subscription,
                    grant.subject,
                    grant.issuer
                );
            }
            Ok(())
        }
    }
}
