//! Instances met by earlier pages of aggregate queries, shared by the backends.
//!
//! An instance row never changes once written, so entries never go stale (on
//! any replica); the cache only starts over when full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::Instance;

/// Most instances kept.
const INSTANCE_CACHE_LIMIT: usize = 200_000;

/// The instance cache of one store.
#[derive(Default)]
pub(crate) struct InstanceCache(Mutex<HashMap<i64, Arc<Instance>>>);

impl InstanceCache {
    /// The cached instance of each of `keys`, in their order (`None` where
    /// not cached), and the keys to load, sorted and without repeats.
    pub(crate) fn lookup(&self, keys: &[i64]) -> (Vec<Option<Arc<Instance>>>, Vec<i64>) {
        let cache = self.0.lock().expect("instance cache lock");
        let found: Vec<Option<Arc<Instance>>> =
            keys.iter().map(|key| cache.get(key).cloned()).collect();
        let mut missing: Vec<i64> = (keys.iter().zip(&found))
            .filter(|(_, instance)| instance.is_none())
            .map(|(&key, _)| key)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        (found, missing)
    }

    /// Keeps loaded instances; returns them by key.
    pub(crate) fn keep(&self, loaded: Vec<Instance>) -> HashMap<i64, Arc<Instance>> {
        let mut cache = self.0.lock().expect("instance cache lock");
        if cache.len() + loaded.len() > INSTANCE_CACHE_LIMIT {
            cache.clear();
        }
        let mut kept = HashMap::with_capacity(loaded.len());
        for instance in loaded {
            let instance = Arc::new(instance);
            cache.insert(instance.key, instance.clone());
            kept.insert(instance.key, instance);
        }
        kept
    }
}
