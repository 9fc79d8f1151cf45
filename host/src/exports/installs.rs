//! Installing and upgrading adapters: every check happens before anything is
//! stored, so a refused install leaves the host as it was.

use sha2::{Digest, Sha256};

use super::{Exports, Manifest};
use crate::sandbox::engine::CompilesBusy;
use crate::sandbox::{LoadedAdapter, RunFailure, describe, validate_config};
use crate::store::StoreError;
use crate::store::exports::{AdapterDescription, Installation, NewInstallation};

/// Why an install or upgrade was refused. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The manifest does not parse or fails a check (it says which).
    #[error("{0:#}")]
    Manifest(anyhow::Error),
    /// The component sent is not the one the manifest pins.
    #[error("the component's sha256 is {actual}, but the manifest pins {pinned}")]
    Sha256Mismatch {
        /// The sha256 the manifest names.
        pinned: String,
        /// The sha256 of the bytes sent.
        actual: String,
    },
    /// No component was sent and the store has none with the pinned sha256.
    #[error("no component with sha256 {0} is stored: send the component with the manifest")]
    MissingComponent(String),
    /// The component is not a loadable `tally:billing` adapter (not a
    /// component, a wrong world, over the engine's bounds, a failed compile).
    #[error("{0:#}")]
    Component(anyhow::Error),
    /// The manifest and the component name different world versions.
    #[error(
        "the manifest targets tally:billing@{manifest}, but the component targets tally:billing@{component}"
    )]
    WorldMismatch {
        /// The world version the manifest declares.
        manifest: String,
        /// The world version the component exports.
        component: String,
    },
    /// `validate-config` refused the manifest's configuration.
    #[error("the adapter refused its configuration: {0}")]
    InvalidConfig(String),
    /// The adapter failed (trapped, timed out…) in `describe` or `validate-config`.
    #[error("the adapter failed while checked: {0}")]
    Adapter(RunFailure),
    /// `describe` returned a description the host refuses (too long, bad names).
    #[error("{0}")]
    Description(RunFailure),
    /// No turn (an install-time call, or a compile: how many run at once)
    /// came free within the wait (`[exports] install_wait`): 503, try again.
    #[error(
        "{0} installs are being checked already and none finished within {1:?}: try again later"
    )]
    Busy(usize, std::time::Duration),
    /// An upgrade names an installation that does not exist.
    #[error("no adapter is installed as '{0}'")]
    NotFound(String),
    /// An upgrade changes the schedule's window, which would orphan runs.
    #[error("an upgrade cannot change the schedule's window ({0}): install under a new name")]
    WindowChanged(String),
    /// The store failed or refused (a name taken meanwhile…).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an install did, for the operator.
#[derive(Debug)]
pub struct Installed {
    /// The installation as stored.
    pub installation: Installation,
    /// Whether the component was compiled now (else its artifact was cached).
    pub compiled: bool,
}

impl Exports {
    /// Installs an adapter: the manifest, and the component unless the store
    /// has it already (by the manifest's sha256).
    pub async fn install(
        &self,
        manifest_text: &str,
        component: Option<Vec<u8>>,
    ) -> Result<Installed, InstallError> {
        let _running = self.install_running();
        // The cheap refusal first: a taken name needs no compile (the
        // database still enforces it, should two installs race).
        let manifest = Manifest::parse(manifest_text).map_err(InstallError::Manifest)?;
        if self.store.installation(&manifest.name).await?.is_some() {
            let name = &manifest.name;
            return Err(
                StoreError::Exists(format!("an adapter is already installed as '{name}'")).into(),
            );
        }
        let (manifest, adapter, description) = self.check(manifest, component).await?;
        let first_window = match manifest.start {
            Some(start) => start,
            // The window the install falls in, by the clock windows close by.
            None => {
                let window = manifest.window;
                window.start_of(window.bucket_of(self.store.clock().await?))
            }
        };
        let installation = self
            .store
            .create_installation(NewInstallation {
                name: manifest.name.clone(),
                manifest: manifest_text.to_owned(),
                component_sha256: adapter.sha256.clone(),
                description,
                first_window,
                publish_to_tenants: manifest.publish_to_tenants,
            })
            .await?;
        tracing::info!(adapter = %installation.name, sha256 = %adapter.sha256, "adapter installed");
        self.wake();
        Ok(Installed {
            installation,
            compiled: !adapter.cached,
        })
    }

    /// Replaces an installation's manifest and component, keeping its runs,
    /// documents and watermark. The window cannot change. The component it
    /// replaced is evicted if no installation uses it any more.
    pub async fn upgrade(
        &self,
        name: &str,
        manifest_text: &str,
        component: Option<Vec<u8>>,
    ) -> Result<Installed, InstallError> {
        let upgraded = {
            let _running = self.install_running();
            self.replace(name, manifest_text, component).await?
        };
        self.evict_unused_logged().await;
        Ok(upgraded)
    }

    async fn replace(
        &self,
        name: &str,
        manifest_text: &str,
        component: Option<Vec<u8>>,
    ) -> Result<Installed, InstallError> {
        let existing = self
            .store
            .installation(name)
            .await?
            .ok_or_else(|| InstallError::NotFound(name.to_owned()))?;
        // Secrets given as "***" keep their stored values.
        let manifest_text =
            &super::manifest::keep_stored_secrets(manifest_text, &existing.manifest)
                .map_err(InstallError::Manifest)?;
        // The cheap refusals first, before the component is compiled.
        let manifest = Manifest::parse(manifest_text).map_err(InstallError::Manifest)?;
        if !manifest.name.eq_ignore_ascii_case(&existing.name) {
            return Err(InstallError::Manifest(anyhow::anyhow!(
                "the manifest names '{}', not '{}'",
                manifest.name,
                existing.name
            )));
        }
        // An upgrade is how a stored manifest that no longer passes the
        // checks is replaced: its window is then unknown, and not compared.
        match self.load(existing.clone()).map(|loaded| loaded.manifest) {
            Ok(before) if before.window != manifest.window => {
                return Err(InstallError::WindowChanged(format!(
                    "{:?} to {:?}",
                    before.window, manifest.window
                )));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "replacing a stored manifest that is not valid"),
        }
        let (manifest, adapter, description) = self.check(manifest, component).await?;
        let installation = self
            .store
            .upgrade_installation(NewInstallation {
                name: existing.name.clone(),
                manifest: manifest_text.to_owned(),
                component_sha256: adapter.sha256.clone(),
                description,
                first_window: existing.watermark,
                publish_to_tenants: manifest.publish_to_tenants,
            })
            .await?
            .ok_or_else(|| InstallError::NotFound(name.to_owned()))?;
        tracing::info!(adapter = %installation.name, sha256 = %adapter.sha256, "adapter upgraded");
        self.wake();
        Ok(Installed {
            installation,
            compiled: !adapter.cached,
        })
    }

    /// Every check of an install past the manifest's parse: secrets, pin,
    /// component, world, config. Stores the component (content-addressed)
    /// once it passed.
    async fn check(
        &self,
        manifest: Manifest,
        component: Option<Vec<u8>>,
    ) -> Result<(Manifest, LoadedAdapter, AdapterDescription), InstallError> {
        manifest
            .check_secrets_given()
            .map_err(InstallError::Manifest)?;
        let wasm = match component {
            Some(wasm) => {
                let actual: String = Sha256::digest(&wasm)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if actual != manifest.sha256 {
                    return Err(InstallError::Sha256Mismatch {
                        pinned: manifest.sha256,
                        actual,
                    });
                }
                wasm
            }
            None => self
                .store
                .component(&manifest.sha256)
                .await?
                .ok_or_else(|| InstallError::MissingComponent(manifest.sha256.clone()))?,
        };
        // Loaded already (installed under another name): nothing to compile or map.
        let (adapter, wasm) = match self.in_memory(&manifest.sha256) {
            Some(adapter) => (adapter, wasm),
            None => self
                .engine
                .load_async(&manifest.sha256, wasm, self.settings.install_wait)
                .await
                .map_err(|error| match error.downcast::<CompilesBusy>() {
                    Ok(busy) => InstallError::Busy(busy.turns, busy.wait),
                    Err(error) => InstallError::Component(error),
                })?,
        };
        if adapter.world_version != manifest.world_version {
            return Err(InstallError::WorldMismatch {
                manifest: manifest.world_version,
                component: adapter.world_version.to_owned(),
            });
        }
        let (engine, checked, config, limits) = (
            self.engine.clone(),
            adapter.clone(),
            manifest.config_json.clone(),
            manifest.limits.clone(),
        );
        // Install-time calls take instances from the pool runs use: at most
        // `install_calls` at once, so that runs always find theirs.
        let (calls, wait) = (self.settings.install_calls(), self.settings.install_wait);
        let permit = tokio::time::timeout(wait, self.install_calls.clone().acquire_owned())
            .await
            .map_err(|_| InstallError::Busy(calls, wait))?
            .expect("the install-call semaphore is never closed");
        let description = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let (description, _) = describe(&engine, &checked, &limits)?;
            validate_config(&engine, &checked, &config, &limits)?;
            Ok(description)
        })
        .await
        .map_err(|e| InstallError::Component(e.into()))?
        .map_err(|failure| match failure {
            RunFailure::InvalidConfig(reason) => InstallError::InvalidConfig(reason),
            failure @ RunFailure::BadDescription(_) => InstallError::Description(failure),
            other => InstallError::Adapter(other),
        })?;
        self.store.put_component(&adapter.sha256, wasm).await?;
        self.remember(adapter.clone());
        let description = AdapterDescription {
            name: description.name,
            version: description.version,
            produces: description.produces,
        };
        Ok((manifest, adapter, description))
    }
}
