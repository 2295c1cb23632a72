//! Serialised list items of one world generation, so a big list page is a copy.
//!
//! Why: building 5,000 resources as `serde_json::Value`s costs about 100 µs each
//! (allocation, mostly), so a page of 5,000 took half a second of the simulator's CPU,
//! while the real Cloud Controller's cost is what `delay_ms` faults model. A reconciler
//! asks for the same pages every pass; from the cache a page is a copy.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// Presenter -> GUID -> JSON, valid for one world generation (see
/// [`crate::SimState::world_generation`]).
#[derive(Default)]
pub struct PresentedCache {
    inner: RwLock<Generation>,
}

#[derive(Default)]
struct Generation {
    generation: u64,
    items: HashMap<&'static str, HashMap<String, Arc<str>>>,
}

impl PresentedCache {
    /// `rows` presented by `present` and serialised, from the cache when the world has not
    /// changed since they were last presented. `kind` names the presenter (one key space
    /// per presenter), `guid` the row. `generation` is the world generation read under the
    /// same world guard as `rows`.
    pub fn presented<T>(
        &self,
        generation: u64,
        kind: &'static str,
        rows: &[(u64, &T)],
        guid: impl Fn(&T) -> &str,
        present: impl Fn(&T) -> Value,
    ) -> Vec<Arc<str>> {
        let mut items: Vec<Option<Arc<str>>> = {
            let cache = self.inner.read().unwrap_or_else(|e| e.into_inner());
            rows.iter()
                .map(|(_, row)| {
                    (cache.generation == generation)
                        .then(|| cache.items.get(kind)?.get(guid(row)).cloned())
                        .flatten()
                })
                .collect()
        };
        let mut fresh = Vec::new();
        for (item, (_, row)) in items.iter_mut().zip(rows) {
            if item.is_none() {
                let text: Arc<str> = present(row).to_string().into();
                fresh.push((guid(row).to_owned(), text.clone()));
                *item = Some(text);
            }
        }
        if !fresh.is_empty() {
            let mut cache = self.inner.write().unwrap_or_else(|e| e.into_inner());
            if cache.generation < generation {
                cache.items.clear();
                cache.generation = generation;
            }
            if cache.generation == generation {
                cache.items.entry(kind).or_default().extend(fresh);
            }
        }
        items
            .into_iter()
            .map(|i| i.expect("filled above"))
            .collect()
    }
}
