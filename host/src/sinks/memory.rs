//! The embedded online store: a map from key to feature JSON, for the
//! quickstart and for running without servers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::redis::OnlineLayout;
use crate::pipeline::FeatureUpdate;

/// Shared handle on the in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore(Arc<Mutex<BTreeMap<String, String>>>);

impl MemoryStore {
    /// Applies `updates` of a view laid out as `layout`, at each entity's
    /// [`OnlineLayout::template_key`] (tombstones remove the key).
    pub fn write(&self, layout: &OnlineLayout, updates: &[FeatureUpdate]) {
        let mut map = self.0.lock().expect("store lock is never poisoned");
        for u in updates {
            let Some(key) = layout.template_key(&u.entity) else {
                continue;
            };
            match &u.value {
                Some(v) => map.insert(key, v.clone()),
                None => map.remove(&key),
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
