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
    /// The cached instances among `keys`, and the keys to load.
    pub(crate) fn lookup(&self, keys: &[i64]) -> (HashMap<i64, Arc<Instance>>, Vec<i64>) {
        let mut found = HashMap::with_capacity(keys.len());
        let mut missing = Vec::new();
        let cache = self.0.lock().expect("instance cache lock");
        for &key in keys {
            match cache.get(&key) {
                Some(instance) => {
                    found.insert(key, instance.clone());
                }
                None => missing.push(key),
            }
        }
        missing.sort_unstable();
        missing.dedup();
        (found, missing)
    }

    /// Keeps loaded instances and adds them to `found`.
    pub(crate) fn keep(&self, loaded: Vec<Instance>, found: &mut HashMap<i64, Arc<Instance>>) {
        let mut cache = self.0.lock().expect("instance cache lock");
        if cache.len() + loaded.len() > INSTANCE_CACHE_LIMIT {
            cache.clear();
        }
        for instance in loaded {
            let instance = Arc::new(instance);
            cache.insert(instance.key, instance.clone());
            found.insert(instance.key, instance);
        }
    }
}
