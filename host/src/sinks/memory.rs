//! The embedded online store: a map from key to feature JSON, for the
//! quickstart and for running without servers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::pipeline::FeatureUpdate;

/// Shared handle on the in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore(Arc<Mutex<BTreeMap<String, String>>>);

impl MemoryStore {
    /// Applies `updates` (tombstones remove the key).
    pub fn write(&self, updates: &[FeatureUpdate]) {
        let mut map = self.0.lock().expect("store lock is never poisoned");
        for u in updates {
            match &u.value {
                Some(v) => map.insert(u.key.clone(), v.clone()),
                None => map.remove(&u.key),
            };
        }
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0
            .lock()
            .expect("store lock is never poisoned")
            .get(key)
            .cloned()
    }

    /// A copy of every key and value.
    pub fn contents(&self) -> BTreeMap<String, String> {
        self.0.lock().expect("store lock is never poisoned").clone()
    }
}
