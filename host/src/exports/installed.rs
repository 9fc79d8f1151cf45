//! The installations as the service hands them out: each with its manifest,
//! parsed once per stored version, and what holds it back; enabling,
//! disabling and removing them.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Exports, ExportsError, Manifest};
use crate::store::StoreError;
use crate::store::exports::{Installation, Run};

/// An installation with its parsed manifest.
#[derive(Debug, Clone)]
pub struct LoadedInstallation {
    pub installation: Installation,
    pub manifest: Arc<Manifest>,
}

/// An installation and its health, for operators.
#[derive(Debug, Clone)]
pub struct InstallationStatus {
    pub loaded: LoadedInstallation,
    /// The failed first export that holds the watermark until it is run again.
    pub held_by: Option<Run>,
}

impl Exports {
    /// `installation` with its manifest: parsed when this version of it is
    /// first seen, then from memory. A stored manifest that no longer passes
    /// the checks is [`StoreError::InvalidStoredManifest`].
    pub(crate) fn load(
        &self,
        installation: Installation,
    ) -> Result<LoadedInstallation, StoreError> {
        let cached = self
            .manifests
            .lock()
            .expect("manifests lock")
            .get(&installation.id)
            .filter(|(text, _)| *text == installation.manifest)
            .map(|(_, manifest)| manifest.clone());
        let manifest = match cached {
            Some(manifest) => manifest,
            None => {
                let manifest = Arc::new(Manifest::of_installation(&installation)?);
                self.manifests.lock().expect("manifests lock").insert(
                    installation.id,
                    (installation.manifest.clone(), manifest.clone()),
                );
                manifest
            }
        };
        Ok(LoadedInstallation {
            installation,
            manifest,
        })
    }

    /// Forgets the manifests of installations not in `installed` (removed
    /// here or through another replica).
    pub(crate) fn forget_manifests_except(&self, installed: &[Installation]) {
        let ids: HashSet<i64> = installed.iter().map(|i| i.id).collect();
        self.manifests
            .lock()
            .expect("manifests lock")
            .retain(|id, _| ids.contains(id));
    }

    /// The installation named `name` (ignoring case).
    pub async fn installation(&self, name: &str) -> Result<LoadedInstallation, ExportsError> {
        let installation = self
            .store
            .installation(name)
            .await?
            .ok_or_else(|| ExportsError::NotInstalled(name.to_owned()))?;
        Ok(self.load(installation)?)
    }

    /// `installation` with its health.
    pub async fn status(
        &self,
        installation: Installation,
    ) -> Result<InstallationStatus, StoreError> {
        let held_by = self.store.holding_run(installation.id).await?;
        Ok(InstallationStatus {
            loaded: self.load(installation)?,
            held_by,
        })
    }

    /// Every installation with its health, by name.
    pub async fn statuses(&self) -> Result<Vec<InstallationStatus>, StoreError> {
        let installations = self.store.installations().await?;
        self.forget_manifests_except(&installations);
        let mut statuses = Vec::with_capacity(installations.len());
        for installation in installations {
            statuses.push(self.status(installation).await?);
        }
        Ok(statuses)
    }

    /// Enables or disables an installation, and wakes the scheduler: an
    /// enabled one's windows run again, a disabled one starts no new run (a
    /// run in progress finishes).
    pub async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<InstallationStatus, ExportsError> {
        let installation = self
            .store
            .set_enabled(name, enabled)
            .await?
            .ok_or_else(|| ExportsError::NotInstalled(name.to_owned()))?;
        self.wake();
        Ok(self.status(installation).await?)
    }

    /// Removes an installation with its runs and documents, then what no
    /// installation uses any more.
    pub async fn remove(&self, name: &str) -> Result<(), ExportsError> {
        if !self.store.remove_installation(name).await? {
            return Err(ExportsError::NotInstalled(name.to_owned()));
        }
        self.evict_unused_logged().await;
        Ok(())
    }
}
