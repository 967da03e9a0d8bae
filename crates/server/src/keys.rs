//! API keys: format, hashing, and the verification hot path (spec: keys.md).
//!
//! `fgk_` + 43 base62 characters (≈256 bits from the OS CSPRNG) + 6 base62 characters of CRC32
//! over the preceding 47. The checksum lets the server turn away mistyped or forged keys with
//! no database access; only SHA-256(key) is stored. Keys imported from Langflow (`sk-...`)
//! skip the checksum and are verified by hash like any other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "fgk_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = KEY_PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// How many leading characters the masked listing shows (Langflow shows 8 too).
pub const DISPLAY_PREFIX_LEN: usize = 8;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: shown once, then only its hash is kept.
pub struct GeneratedKey {
    pub key: String,
    pub hash: String,
    pub prefix: String,
}

pub fn generate() -> GeneratedKey {
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(KEY_PREFIX);
    // Rejection sampling keeps every character uniform: bytes ≥ 248 (= 4·62) are redrawn.
    let mut pool = [0u8; 64];
    while key.len() < KEY_PREFIX.len() + BODY_LEN {
        getrandom::fill(&mut pool).expect("the OS random number generator is available");
        for &b in pool.iter().filter(|&&b| b < 248) {
            if key.len() == KEY_PREFIX.len() + BODY_LEN {
                break;
            }
            key.push(BASE62[(b % 62) as usize] as char);
        }
    }
    let checksum = crc32(key.as_bytes());
    key.push_str(&base62_fixed(checksum as u64, CHECKSUM_LEN));
    GeneratedKey {
        hash: hash_key(&key),
        prefix: key[..DISPLAY_PREFIX_LEN].to_string(),
        key,
    }
}

/// Cheap shape check done before any lookup. `fgk_` keys must carry a valid checksum;
/// Langflow's `sk-` keys must look like `sk-` + 43 URL-safe base64 characters.
pub fn well_formed(key: &str) -> bool {
    if let Some(rest) = key.strip_prefix(KEY_PREFIX) {
        if key.len() != KEY_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return false;
        }
        let (body, checksum) = key.split_at(KEY_LEN - CHECKSUM_LEN);
        return base62_fixed(crc32(body.as_bytes()) as u64, CHECKSUM_LEN) == checksum;
    }
    if let Some(rest) = key.strip_prefix("sk-") {
        return rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    }
    false
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Langflow's masked form: the display prefix, then one `*` per hidden character.
pub fn mask(prefix: &str, key_length: usize) -> String {
    let mut masked = String::with_capacity(key_length.max(prefix.len()));
    masked.push_str(prefix);
    masked.extend(std::iter::repeat_n(
        '*',
        key_length.saturating_sub(prefix.len()),
    ));
    masked
}

/// CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) — the checksum zlib and PNG use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// `value` in base62, left-padded with `0` to exactly `width` characters.
fn base62_fixed(mut value: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).expect("base62 is ASCII")
}

/// What the server needs to know about a verified key, cached in memory.
#[derive(Debug)]
pub struct VerifiedKey {
    pub key_id: String,
    pub key_hash: [u8; 32],
    pub scope: KeyScope,
    pub flows: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub user: Arc<crate::auth::CurrentUser>,
    usage: Arc<UsageCounter>,
}

impl VerifiedKey {
    pub fn is_expired(&self, now_micros: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_micros)
    }

    /// A key limited to a list of flows reaches only those (by id or endpoint name).
    pub fn allows_flow(&self, flow_id: &str, endpoint_name: Option<&str>) -> bool {
        match &self.flows {
            None => true,
            Some(list) => list
                .iter()
                .any(|f| f == flow_id || Some(f.as_str()) == endpoint_name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Acts as its owner on every route.
    Full,
    /// Run routes only.
    Run,
}

impl KeyScope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "run" => Some(Self::Run),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Run => "run",
        }
    }
}

#[derive(Debug, Default)]
struct UsageCounter {
    uses: AtomicU64,
    last_used_at: AtomicI64,
}

/// Verified keys by hash, plus per-key usage counters that survive cache invalidation until
/// they are flushed. Reads take a shared lock; only misses and invalidations write.
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<[u8; 32], Arc<VerifiedKey>>>,
    usage: RwLock<HashMap<String, Arc<UsageCounter>>>,
    /// Hashes of well-formed keys the database did not know, with when that was found out.
    /// CRC-32 is no secret, so anyone can forge keys that pass the checksum; without this, each
    /// such request would cost a database lookup.
    unknown: RwLock<HashMap<[u8; 32], std::time::Instant>>,
    seen_epoch: AtomicU64,
}

/// How long a key the database did not know is refused without asking again. A key is created
/// with fresh randomness, so nobody presents it before it exists; the bound only matters for
/// keys that another process inserts after a failed attempt with that exact value.
const UNKNOWN_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Most unknown hashes remembered; the set starts over beyond it.
const MAX_UNKNOWN_KEYS: usize = 100_000;

/// Most keys a cache holds before it starts over; a bound against memory growth from a
/// flood of distinct valid keys (at 100k keys that is ~30 MB).
const MAX_CACHED_KEYS: usize = 100_000;

impl KeyCache {
    /// Drops every entry when another process (or this one) announced an auth change.
    pub fn sync_epoch(&self, epoch: u64) {
        if self.seen_epoch.load(Ordering::Acquire) != epoch {
            self.clear();
            self.seen_epoch.store(epoch, Ordering::Release);
        }
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<VerifiedKey>> {
        let entries = self.entries.read().expect("key cache lock");
        let entry = entries.get(hash)?;
        // The map lookup already matched; compare again in constant time so no timing
        // difference depends on how many leading bytes matched.
        bool::from(entry.key_hash.ct_eq(hash)).then(|| entry.clone())
    }

    pub fn insert(
        &self,
        key_id: String,
        key_hash: [u8; 32],
        scope: KeyScope,
        flows: Option<Vec<String>>,
        expires_at: Option<i64>,
        user: Arc<crate::auth::CurrentUser>,
    ) -> Arc<VerifiedKey> {
        let usage = self
            .usage
            .write()
            .expect("usage lock")
            .entry(key_id.clone())
            .or_default()
            .clone();
        let entry = Arc::new(VerifiedKey {
            key_id,
            key_hash,
            scope,
            flows,
            expires_at,
            user,
            usage,
        });
        let mut entries = self.entries.write().expect("key cache lock");
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(key_hash, entry.clone());
        entry
    }

    /// Whether this hash was looked up recently and not found.
    pub fn known_unknown(&self, hash: &[u8; 32]) -> bool {
        let unknown = self.unknown.read().expect("unknown-key lock");
        unknown
            .get(hash)
            .is_some_and(|at| at.elapsed() < UNKNOWN_KEY_TTL)
    }

    pub fn remember_unknown(&self, hash: [u8; 32]) {
        let mut unknown = self.unknown.write().expect("unknown-key lock");
        if unknown.len() >= MAX_UNKNOWN_KEYS {
            unknown.clear();
        }
        unknown.insert(hash, std::time::Instant::now());
    }

    pub fn remove(&self, hash: &[u8; 32]) {
        self.entries.write().expect("key cache lock").remove(hash);
    }

    pub fn clear(&self) {
        self.entries.write().expect("key cache lock").clear();
        self.unknown.write().expect("unknown-key lock").clear();
    }

    /// Counts one use; no database write here (flushed in batches).
    pub fn record_use(&self, key: &VerifiedKey, now_micros: i64) {
        key.usage.uses.fetch_add(1, Ordering::Relaxed);
        key.usage
            .last_used_at
            .fetch_max(now_micros, Ordering::Relaxed);
    }

    /// Takes the uses counted since the last call: `(key id, uses, last used)`.
    pub fn drain_usage(&self) -> Vec<(String, i64, i64)> {
        let mut usage = self.usage.write().expect("usage lock");
        let mut out = Vec::new();
        usage.retain(|id, counter| {
            let uses = counter.uses.swap(0, Ordering::AcqRel);
            if uses > 0 {
                out.push((
                    id.clone(),
                    uses as i64,
                    counter.last_used_at.load(Ordering::Acquire),
                ));
            }
            // Keep counters that a cached entry still points at; forget idle ones.
            Arc::strong_count(counter) > 1 || uses > 0
        });
        out
    }

    /// Puts back usage that could not be written, so nothing counted is lost.
    pub fn restore_usage(&self, key_id: String, uses: i64, last_used_at: i64) {
        let mut usage = self.usage.write().expect("usage lock");
        let counter = usage.entry(key_id).or_default();
        counter.uses.fetch_add(uses as u64, Ordering::Relaxed);
        counter
            .last_used_at
            .fetch_max(last_used_at, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.entries.read().expect("key cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes a stored hex hash into bytes for the cache key.
pub fn hash_bytes(hex_hash: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out).ok()?;
    Some(out)
}

pub fn hash_key_bytes(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        for _ in 0..200 {
            let k = generate();
            assert_eq!(k.key.len(), 53);
            assert!(k.key.starts_with("fgk_"));
            assert!(k.key[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(well_formed(&k.key), "{}", k.key);
            assert_eq!(k.prefix, &k.key[..8]);
            assert_eq!(k.hash, hash_key(&k.key));
            assert_eq!(k.hash.len(), 64);
        }
    }

    #[test]
    fn keys_are_distinct() {
        let a = generate().key;
        let b = generate().key;
        assert_ne!(a, b);
    }

    #[test]
    fn checksum_catches_a_single_typo() {
        let key = generate().key;
        for i in 4..KEY_LEN {
            let mut bytes = key.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert!(!well_formed(&typo), "typo at {i} accepted: {typo}");
        }
    }

    #[test]
    fn rejects_garbage_and_accepts_langflow_keys() {
        assert!(!well_formed(""));
        assert!(!well_formed("nope"));
        assert!(!well_formed("fgk_"));
        assert!(!well_formed(&"fgk_".repeat(14)[..53]));
        assert!(well_formed(
            "sk-TLbX37OglmE-41rY6FWfh9msE6GQz2P0xQ0PixOJChU"
        ));
        assert!(!well_formed("sk-wrong"));
        assert!(!well_formed(
            "sk-TLbX37OglmE-41rY6FWfh9msE6GQz2P0xQ0PixOJCh?"
        ));
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn base62_is_fixed_width() {
        assert_eq!(base62_fixed(0, 6), "000000");
        assert_eq!(base62_fixed(61, 6), "00000z");
        assert_eq!(base62_fixed(62, 6), "000010");
        assert_eq!(base62_fixed(u32::MAX as u64, 6), "4gfFC3");
    }

    #[test]
    fn unknown_keys_are_remembered_until_cleared() {
        let cache = KeyCache::default();
        let hash = hash_key_bytes("fgk_forged");
        assert!(!cache.known_unknown(&hash));
        cache.remember_unknown(hash);
        assert!(cache.known_unknown(&hash));
        cache.clear();
        assert!(!cache.known_unknown(&hash));
    }

    #[test]
    fn masks_like_langflow() {
        assert_eq!(mask("sk-TLbX3", 46), format!("sk-TLbX3{}", "*".repeat(38)));
        assert_eq!(mask("fgk_abcd", 53).len(), 53);
    }
}
