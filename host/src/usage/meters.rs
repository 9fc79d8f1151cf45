//! The meter catalog: which meters usage may be reported against.
//!
//! Seeded from the 69 meters that Azure Stack Hub documents
//! (`host/data/azure-stack-meters.csv`) and extended by the operator. Meter ids
//! mix case and hyphenation; they are compared case-insensitively and served in
//! the catalog's spelling.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The store's compact key for a meter.
pub type MeterKey = i64;

/// A meter of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Meter {
    /// The store's key; not part of the API.
    #[serde(skip)]
    pub key: MeterKey,
    /// The meter id as resource providers report it.
    pub id: String,
    pub name: String,
    pub category: String,
    pub unit: String,
    #[serde(default)]
    pub notes: String,
}

/// The documented Azure Stack Hub meters, compiled into the binary.
const DOCUMENTED_METERS_CSV: &str = include_str!("../../data/azure-stack-meters.csv");

/// The documented Azure Stack Hub meters (keys unset).
pub fn documented_meters() -> Vec<Meter> {
    read_meters_csv(DOCUMENTED_METERS_CSV).expect("the embedded meter catalog is valid CSV")
}

/// Reads meters from CSV with the seed file's columns:
/// `meter_id,meter_name,category,unit,notes` (keys unset).
pub fn read_meters_csv(text: &str) -> anyhow::Result<Vec<Meter>> {
    #[derive(Deserialize)]
    struct Row {
        meter_id: String,
        meter_name: String,
        category: String,
        unit: String,
        #[serde(default)]
        notes: String,
    }
    let mut meters = Vec::new();
    for (line, row) in csv::Reader::from_reader(text.as_bytes())
        .deserialize::<Row>()
        .enumerate()
    {
        let row = row.map_err(|e| anyhow::anyhow!("line {}: {e}", line + 2))?;
        if row.meter_id.trim().is_empty() || row.meter_name.trim().is_empty() {
            anyhow::bail!(
                "line {}: meter_id and meter_name must not be empty",
                line + 2
            );
        }
        meters.push(Meter {
            key: 0,
            id: row.meter_id.trim().to_string(),
            name: row.meter_name,
            category: row.category,
            unit: row.unit,
            notes: row.notes,
        });
    }
    Ok(meters)
}

/// An in-memory snapshot of the catalog, for validation and for answering queries.
#[derive(Debug, Clone, Default)]
pub struct MeterCatalog {
    meters: Vec<Arc<Meter>>,
    by_lower_id: HashMap<String, usize>,
    by_key: HashMap<MeterKey, usize>,
}

impl MeterCatalog {
    /// Builds a catalog from meters that carry their store keys.
    pub fn new(meters: Vec<Meter>) -> Self {
        let by_lower_id = meters
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.to_ascii_lowercase(), i))
            .collect();
        let by_key = meters.iter().enumerate().map(|(i, m)| (m.key, i)).collect();
        MeterCatalog {
            meters: meters.into_iter().map(Arc::new).collect(),
            by_lower_id,
            by_key,
        }
    }

    /// The documented meters with keys 1..=69, for tests that need no store.
    pub fn builtin_for_tests() -> Self {
        let meters = documented_meters()
            .into_iter()
            .enumerate()
            .map(|(i, m)| Meter {
                key: i as MeterKey + 1,
                ..m
            })
            .collect();
        MeterCatalog::new(meters)
    }

    /// Finds a meter by id, ignoring case.
    pub fn resolve(&self, id: &str) -> Option<&Meter> {
        self.by_lower_id
            .get(&id.to_ascii_lowercase())
            .map(|&i| &*self.meters[i])
    }

    /// Finds a meter by its store key.
    pub fn by_key(&self, key: MeterKey) -> Option<&Arc<Meter>> {
        self.by_key.get(&key).map(|&i| &self.meters[i])
    }

    /// All meters, in catalog order.
    pub fn all(&self) -> &[Arc<Meter>] {
        &self.meters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_catalog_has_69_distinct_meters() {
        let meters = documented_meters();
        assert_eq!(meters.len(), 69);
        let catalog = MeterCatalog::builtin_for_tests();
        assert_eq!(
            catalog.by_lower_id.len(),
            69,
            "ids are unique ignoring case"
        );
    }

    #[test]
    fn ids_resolve_ignoring_case() {
        let catalog = MeterCatalog::builtin_for_tests();
        let meter = catalog.resolve("f271a8a388c44d93956a063e1d2fa80b").unwrap();
        assert_eq!(meter.name, "Static IP Address Usage");
        assert_eq!(
            catalog
                .resolve("F271A8A388C44D93956A063E1D2FA80B")
                .unwrap()
                .key,
            meter.key
        );
        assert!(
            catalog
                .resolve("F271A8A3-88C4-4D93-956A-063E1D2FA80B")
                .is_none()
        );
    }
}
