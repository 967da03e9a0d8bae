//! Message scopes (migration `0005_message_scopes`): the (user, session, flow) a message belongs
//! to, as a small integer the messages table is indexed by. Only the message writer creates
//! them, inside the transaction of the batch that first needs one; it keeps the ids it learned
//! in a [`ScopeCache`], filled only once that transaction committed (a rolled-back id may be
//! given to another scope). Scopes are deleted only with their user, so a cached id never
//! points to another scope.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use crate::messages::MessageRow;

/// Scope ids a cache holds at most before it starts over (a bound on memory).
const MAX_CACHED: usize = 100_000;

/// The scope's id, if it exists (`$1` user, `$2` session, `$3` flow key).
pub(crate) const SELECT_SQL: &str =
    "SELECT id FROM message_scopes WHERE user_id = $1 AND session_id = $2 AND flow_key = $3";
/// Creates the scope unless it exists (another instance may have just created it).
pub(crate) const INSERT_SQL: &str = "INSERT INTO message_scopes (user_id, session_id, flow_key) \
     VALUES ($1, $2, $3) ON CONFLICT (user_id, session_id, flow_key) DO NOTHING";

/// The flow part of a scope: the flow id, or '' for a message of no flow.
pub(crate) fn flow_key(flow_id: Option<&str>) -> &str {
    flow_id.unwrap_or("")
}

/// A row's scope as (user, session, flow key).
pub(crate) fn key_of(row: &MessageRow) -> (&str, &str, &str) {
    (
        &row.user_id,
        &row.session_id,
        flow_key(row.flow_id.as_deref()),
    )
}

/// Scope ids by (user, session, flow key), looked up without building a key.
#[derive(Default)]
pub(crate) struct ScopeCache {
    hasher: RandomState,
    by_hash: HashMap<u64, (String, String, String, i64)>,
}

impl ScopeCache {
    fn hash(&self, (user, session, flow): (&str, &str, &str)) -> u64 {
        self.hasher.hash_one((user, session, flow))
    }

    pub(crate) fn get(&self, row: &MessageRow) -> Option<i64> {
        let key = key_of(row);
        let (user, session, flow, id) = self.by_hash.get(&self.hash(key))?;
        ((user.as_str(), session.as_str(), flow.as_str()) == key).then_some(*id)
    }

    /// Remembers `row`'s scope id; call only once the transaction that read or created it
    /// committed.
    pub(crate) fn insert(&mut self, row: &MessageRow, id: i64) {
        if self.by_hash.len() >= MAX_CACHED {
            self.by_hash.clear();
        }
        let key = key_of(row);
        let (user, session, flow) = key;
        self.by_hash.insert(
            self.hash(key),
            (user.to_owned(), session.to_owned(), flow.to_owned(), id),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, session: &str, flow: Option<&str>) -> MessageRow {
        MessageRow {
            user_id: user.into(),
            session_id: session.into(),
            flow_id: flow.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn a_cached_id_is_found_by_its_own_scope_only() {
        let mut cache = ScopeCache::default();
        cache.insert(&row("u", "s", Some("f")), 7);
        cache.insert(&row("u", "s", None), 8);
        assert_eq!(cache.get(&row("u", "s", Some("f"))), Some(7));
        assert_eq!(cache.get(&row("u", "s", None)), Some(8));
        assert_eq!(
            cache.get(&row("u", "s", Some(""))),
            Some(8),
            "no flow is flow key ''"
        );
        assert_eq!(cache.get(&row("v", "s", Some("f"))), None);
        assert_eq!(cache.get(&row("u", "t", Some("f"))), None);
        // The parts are compared one by one: "u"+"sx" is not "us"+"x".
        cache.insert(&row("us", "x", Some("f")), 9);
        assert_eq!(cache.get(&row("u", "sx", Some("f"))), None);
    }
}
