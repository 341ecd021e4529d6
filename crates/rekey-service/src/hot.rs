//! The credential fetch's caches (the hot path): API keys by token hash,
//! and connections with their sealed secret rows by id.
//!
//! Neither holds a plaintext secret (a key's hash and principal; secret
//! rows as stored, sealed), and neither is trusted on its own: a read
//! served from them writes its audit entry only if, inside the transaction
//! that writes it, the key is still active and the connection still at the
//! version read ([`rekey_store::ReadCheck`]). When that fails nothing is
//! handed out from the cache: the entries are dropped and the read is done
//! again from the database. So a key revoked, or a connection disabled or
//! given new material, on any replica stops being served at once, without
//! an invalidation message between replicas.

use rekey_store::connections::ConnectionRow;
use rekey_store::secrets::SecretRow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::Principal;

/// Entries per cache at most. A connection entry is its row and sealed
/// secret rows (about a kilobyte or two), so both caches together stay
/// within a few tens of MiB.
const CAPACITY: usize = 10_000;

/// A connection as last read, with its sealed secret rows.
pub(crate) struct CachedConnection {
    pub row: ConnectionRow,
    pub secrets: Vec<SecretRow>,
    /// `row.credential_meta` (no secret: placement, header name, user
    /// name…) parsed once rather than on every read; None when it does not
    /// parse, and the read is then left to the full path, which says so.
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

impl CachedConnection {
    pub(crate) fn new(row: ConnectionRow, secrets: Vec<SecretRow>) -> CachedConnection {
        let meta = serde_json::from_str(&row.credential_meta).ok();
        CachedConnection { row, secrets, meta }
    }
}

#[derive(Default)]
pub(crate) struct HotCache {
    keys: Bounded<String, Principal>,
    connections: Bounded<(String, String), Arc<CachedConnection>>,
}

impl HotCache {
    pub(crate) fn key(&self, hash: &str) -> Option<Principal> {
        self.keys.get(&hash.to_string())
    }

    pub(crate) fn put_key(&self, hash: &str, p: Principal) {
        self.keys.put(hash.to_string(), p);
    }

    pub(crate) fn forget_key(&self, hash: &str) {
        self.keys.remove(&hash.to_string());
    }

    pub(crate) fn connection(&self, tenant: &str, id: &str) -> Option<Arc<CachedConnection>> {
        self.connections.get(&(tenant.to_string(), id.to_string()))
    }

    pub(crate) fn put_connection(&self, c: CachedConnection) -> Arc<CachedConnection> {
        let c = Arc::new(c);
        self.connections
            .put((c.row.tenant.clone(), c.row.id.clone()), c.clone());
        c
    }

    pub(crate) fn forget_connection(&self, tenant: &str, id: &str) {
        self.connections
            .remove(&(tenant.to_string(), id.to_string()));
    }
}

/// A map of at most [`CAPACITY`] entries: when full, an arbitrary entry
/// (the first in the table's order, which hashing makes arbitrary) makes
/// room. Memory stays bounded whatever the callers ask for; a miss costs
/// only a database read.
struct Bounded<K, V> {
    map: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Bounded {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        // A panic elsewhere cannot leave the map half-changed in a way
        // that matters: every entry is checked before it is trusted.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, k: &K) -> Option<V> {
        self.lock().get(k).cloned()
    }

    fn put(&self, k: K, v: V) {
        let mut m = self.lock();
        if m.len() >= CAPACITY && !m.contains_key(&k) {
            if let Some(victim) = m.keys().next().cloned() {
                m.remove(&victim);
            }
        }
        m.insert(k, v);
    }

    fn remove(&self, k: &K) {
        self.lock().remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_never_grows_past_capacity() {
        let b: Bounded<usize, usize> = Bounded::default();
        for i in 0..CAPACITY + 500 {
            b.put(i, i);
        }
        assert_eq!(b.lock().len(), CAPACITY);
        // The newest entry always stays.
        assert_eq!(b.get(&(CAPACITY + 499)), Some(CAPACITY + 499));
        b.remove(&(CAPACITY + 499));
        assert_eq!(b.get(&(CAPACITY + 499)), None);
    }
}
