//! `tally token create|list|revoke`: API tokens. A secret is printed once, at
//! creation; the store keeps only its digest.

use anyhow::{anyhow, bail};
use clap::Subcommand;

use super::DataDir;
use crate::auth::{Role, new_secret, secret_digest};
use crate::store::NewToken;
use crate::usage::record::{MAX_ID_LEN, check_id};

/// `tally token …`
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        #[command(flatten)]
        data_dir: DataDir,
        #[arg(long, value_enum)]
        role: Role,
        /// A subscription a tenant token may read (repeat for several).
        #[arg(long = "subscription")]
        subscriptions: Vec<String>,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (ids, roles, subscriptions; never secrets).
    List {
        #[command(flatten)]
        data_dir: DataDir,
    },
    /// Revoke a token by id: it stops working at once.
    Revoke {
        #[command(flatten)]
        data_dir: DataDir,
        id: i64,
    },
}

/// Runs `tally token …`.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            data_dir,
            role,
            subscriptions,
            description,
        } => {
            match (role, subscriptions.is_empty()) {
                (Role::Tenant, true) => bail!("a tenant token needs at least one --subscription"),
                (Role::Operator | Role::Reporter, false) => {
                    bail!("--subscription applies to tenant tokens only")
                }
                _ => {}
            }
            // Refused, not trimmed: " sub-1" would be a subscription no usage is reported under.
            for subscription in &subscriptions {
                check_id(subscription, MAX_ID_LEN)
                    .map_err(|problem| anyhow!("--subscription {problem}"))?;
            }
            let store = data_dir.open_store().await?;
            let secret = new_secret();
            store
                .create_token(NewToken {
                    digest: secret_digest(&secret),
                    role,
                    subscriptions,
                    description,
                })
                .await?;
            println!("{secret}");
            Ok(())
        }
        TokenCommand::List { data_dir } => {
            let store = data_dir.open_store().await?;
            println!(
                "{:>4}  {:<8}  {:<19}  {:<36}  description",
                "id", "role", "created", "subscriptions"
            );
            for token in store.list_tokens().await? {
                let created = token.created_at.get(..19).unwrap_or(&token.created_at);
                let subscriptions = token.subscriptions.join(",");
                let role = token.role.as_str();
                println!(
                    "{:>4}  {role:<8}  {created:<19}  {subscriptions:<36}  {}",
                    token.id, token.description
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { data_dir, id } => {
            let store = data_dir.open_store().await?;
            if !store.revoke_token(id).await? {
                bail!("there is no token with id {id}");
            }
            println!("token {id} revoked");
            Ok(())
        }
    }
}
