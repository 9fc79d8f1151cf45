//! `tally token create`: mint an API token; the secret is printed once.

use std::sync::Arc;

use anyhow::bail;
use clap::Subcommand;

use super::DataDir;
use crate::auth::{Role, new_secret, secret_digest};
use crate::store::sqlite::SqliteStore;
use crate::store::{NewToken, Store};

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
}

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
            let store = Arc::new(SqliteStore::open(&data_dir.or_default())?);
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
    }
}
