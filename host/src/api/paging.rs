//! Continuation tokens: an opaque, URL-safe encoding of where the next page starts.
//!
//! A token carries a [`Position`] and a fingerprint of the query that issued
//! it, so it cannot be replayed against another query. It holds no secret and
//! grants nothing: the subscription scope always comes from the request, so a
//! forged token can only move within what the caller may already read. Any
//! replica decodes any replica's token.

use std::hash::{Hash, Hasher};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::store::{AggregateQuery, Position};

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 4 * 8;

/// Encodes the position after which the next page of `query` starts.
pub fn encode(query: &AggregateQuery, position: Position) -> String {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(&fingerprint(query).to_be_bytes());
    for value in [
        position.subscription,
        position.bucket,
        position.meter,
        position.instance,
    ] {
        bytes.extend_from_slice(&value.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a token issued for `query`; `None` if it is malformed or was issued for another query.
pub fn decode(query: &AggregateQuery, token: &str) -> Option<Position> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    if bytes.len() != LEN || bytes[0] != VERSION {
        return None;
    }
    let word = |i: usize| -> [u8; 8] { bytes[1 + 8 * i..9 + 8 * i].try_into().expect("8 bytes") };
    if u64::from_be_bytes(word(0)) != fingerprint(query) {
        return None;
    }
    let number = |i: usize| i64::from_be_bytes(word(i));
    Some(Position {
        subscription: number(1),
        bucket: number(2),
        meter: number(3),
        instance: number(4),
    })
}

/// A stable hash of what the query selects (not of its page size).
fn fingerprint(query: &AggregateQuery) -> u64 {
    // FNV-1a: stable across builds and replicas, unlike std's RandomState.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    match &query.scope {
        crate::store::SubscriptionScope::One(id) => id.to_ascii_lowercase().hash(&mut hasher),
        crate::store::SubscriptionScope::All => "*all*".hash(&mut hasher),
    }
    query.reported_start.timestamp().hash(&mut hasher);
    query.reported_end.timestamp().hash(&mut hasher);
    query.granularity.hash(&mut hasher);
    query.show_details.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SubscriptionScope;
    use crate::usage::Granularity;
    use crate::usage::time::parse_time;

    fn query(sub: &str) -> AggregateQuery {
        AggregateQuery {
            scope: SubscriptionScope::One(sub.into()),
            reported_start: parse_time("2024-05-01T00:00:00Z").unwrap(),
            reported_end: parse_time("2024-06-01T00:00:00Z").unwrap(),
            granularity: Granularity::Daily,
            show_details: true,
            page_size: 1000,
        }
    }

    #[test]
    fn round_trips_and_is_url_safe() {
        let position = Position {
            subscription: 3,
            bucket: 19_000,
            meter: 12,
            instance: -1,
        };
        let token = encode(&query("a"), position);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode(&query("a"), &token), Some(position));
    }

    #[test]
    fn refuses_tokens_of_other_queries_and_garbage() {
        let token = encode(
            &query("a"),
            Position {
                subscription: 1,
                bucket: 2,
                meter: 3,
                instance: 4,
            },
        );
        assert_eq!(decode(&query("b"), &token), None);
        let mut hourly = query("a");
        hourly.granularity = Granularity::Hourly;
        assert_eq!(decode(&hourly, &token), None);
        assert_eq!(decode(&query("a"), "not a token"), None);
        assert_eq!(decode(&query("a"), &token[..20]), None);
    }
}
