//! What a run has read: a digest of every row handed to the adapter, and the
//! subscriptions those rows belong to (whose documents it may write).
//!
//! The digest ([`UsageRead::sha256_hex`]) is SHA-256 over the rows in the
//! order handed, independent of how they were cut into batches. Per row, in
//! this order: subscription id, meter id, resource uri, location, additional
//! info (each as its byte length, u64 little-endian, then its UTF-8 bytes),
//! the tag pairs (their count, u64 LE, then key and value as strings), usage
//! start and end (i64 LE) and quantity (the f64's bits, u64 LE). A run that
//! reads nothing has the digest of nothing.
//!
//! Hashing is most of what handing rows over costs the host (SHA-256 of
//! some 200 bytes a row), so a run that reads more than a chunk hashes on a
//! thread of its own: the adapter works on a batch while the host hashes
//! the one before. The thread's buffers are charged to the run, and only
//! started when the run has room for them twice over: hashing beside is a
//! speed-up, never why a run under a small memory cap is refused.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::contract::tally::billing::usage::UsageBatch;
use crate::usage::record::{MAX_ID_LEN, MAX_INSTANCE_DATA_LEN, MAX_RESOURCE_URI_LEN};

/// What the host keeps per subscription read beyond its id's bytes (twice:
/// the key folded to lower case, and the spelling).
pub const SUBSCRIPTION_OVERHEAD: usize = 2 * std::mem::size_of::<String>() + 16;

/// Bytes of encoded rows hashed at once.
const DIGEST_CHUNK: usize = 64 << 10;
/// Most bytes one row encodes to, by ingest's limits: its ids, its resource
/// URI, and what its `instanceData` holds (location, tags, additional info)
/// with a length prefix per string, generously.
const MAX_ENCODED_ROW: usize = 2 * MAX_ID_LEN + MAX_RESOURCE_URI_LEN + 4 * MAX_INSTANCE_DATA_LEN;
/// A chunk's buffer: it is hashed once it reaches [`DIGEST_CHUNK`], so it
/// never has to grow.
const CHUNK_CAPACITY: usize = DIGEST_CHUNK + MAX_ENCODED_ROW;
/// Chunks that may wait for the hashing thread; the run waits beyond. A
/// batch of 4,096 rows of some 300 bytes is 19 chunks: the whole batch fits,
/// so the thread hashes it while the adapter works on it.
const CHUNKS_WAITING: usize = 32;
/// The hashing thread's stack (SHA-256 needs little).
const HASHER_STACK: usize = 64 << 10;
/// What hashing beside the run costs it: the chunks waiting, the one being
/// hashed and the one being encoded, and the thread's stack.
pub const HASHER_BYTES: usize = (CHUNKS_WAITING + 2) * CHUNK_CAPACITY + HASHER_STACK;
/// Room the run must have left, under its memory cap, for the hashing
/// thread to start: its buffers, and as much again for the adapter to grow
/// into. With less, the rows are hashed in place.
pub const ROOM_TO_HASH_BESIDE: usize = 2 * HASHER_BYTES;

/// Appends `text` as the digest encodes a string: its byte length (u64 LE),
/// then its UTF-8 bytes.
fn encode_string(encoded: &mut Vec<u8>, text: &str) {
    encoded.extend_from_slice(&(text.len() as u64).to_le_bytes());
    encoded.extend_from_slice(text.as_bytes());
}

/// Where the encoded rows are hashed.
enum Hasher {
    /// On the run's thread: until the rows pass a chunk.
    InPlace(Sha256),
    /// On a thread of its own, fed chunks in order.
    Beside {
        chunks: SyncSender<Vec<u8>>,
        thread: JoinHandle<Sha256>,
    },
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::InPlace(Sha256::new())
    }
}

impl Hasher {
    /// Hashes `chunk` after everything before it; a full chunk starts the
    /// thread if the run has `room` for it. Returns the bytes the run is
    /// newly charged: the thread's, when this chunk starts it.
    fn update(&mut self, chunk: Vec<u8>, room: usize) -> usize {
        match self {
            Hasher::Beside { chunks, .. } => {
                chunks
                    .send(chunk)
                    .expect("the usage digest thread ends only when its run does");
                0
            }
            Hasher::InPlace(digest) if chunk.len() < DIGEST_CHUNK || room < ROOM_TO_HASH_BESIDE => {
                digest.update(&chunk);
                0
            }
            Hasher::InPlace(digest) => {
                let (chunks, waiting) = sync_channel::<Vec<u8>>(CHUNKS_WAITING);
                let mut beside = digest.clone();
                let spawned = std::thread::Builder::new()
                    .name("usage-digest".into())
                    .stack_size(HASHER_STACK)
                    .spawn(move || {
                        for chunk in waiting {
                            beside.update(&chunk);
                        }
                        beside
                    });
                match spawned {
                    Ok(thread) => {
                        chunks.send(chunk).expect("the thread was just started");
                        *self = Hasher::Beside { chunks, thread };
                        HASHER_BYTES
                    }
                    // No thread to be had: hashed in place, as before.
                    Err(_) => {
                        digest.update(&chunk);
                        0
                    }
                }
            }
        }
    }

    /// The digest of every chunk so far (waiting for the thread's).
    fn digest(&mut self) -> Sha256 {
        let digest = match std::mem::take(self) {
            Hasher::InPlace(digest) => digest,
            Hasher::Beside { chunks, thread } => {
                drop(chunks);
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
        };
        *self = Hasher::InPlace(digest.clone());
        digest
    }
}

/// The rows a run was handed, as a digest, and their subscriptions.
#[derive(Default)]
pub struct UsageRead {
    hasher: Hasher,
    /// Subscription ids read, by their ASCII lower case: the store's spelling.
    subscriptions: HashMap<String, String>,
}

impl UsageRead {
    /// Adds the rows of `batch` (the batch as handed to the adapter), with
    /// `room` bytes left under the run's memory cap. Returns the bytes the
    /// host now keeps for subscriptions not read before (and for the
    /// hashing thread, when this batch starts it), to be charged to the run.
    pub fn record(&mut self, batch: &UsageBatch, room: usize) -> usize {
        let text = |index: u32| batch.strings[index as usize].as_str();
        // Rows are encoded into a buffer hashed in large pieces: a few bytes
        // per `update` would cost more than the hashing itself.
        let mut kept = 0;
        let mut encoded = Vec::with_capacity(CHUNK_CAPACITY);
        for row in 0..batch.subscription_id.len() {
            for field in [
                text(batch.subscription_id[row]),
                text(batch.meter_id[row]),
                text(batch.resource_uri[row]),
                text(batch.location[row]),
                text(batch.additional_info[row]),
            ] {
                encode_string(&mut encoded, field);
            }
            let tags = &batch.tag_sets[batch.tags[row] as usize];
            encoded.extend_from_slice(&(tags.len() as u64).to_le_bytes());
            for &(key, value) in tags {
                encode_string(&mut encoded, text(key));
                encode_string(&mut encoded, text(value));
            }
            encoded.extend_from_slice(&batch.usage_start[row].to_le_bytes());
            encoded.extend_from_slice(&batch.usage_end[row].to_le_bytes());
            encoded.extend_from_slice(&batch.quantity[row].to_bits().to_le_bytes());
            if encoded.len() >= DIGEST_CHUNK {
                let full = std::mem::replace(&mut encoded, Vec::with_capacity(CHUNK_CAPACITY));
                kept += self.hasher.update(full, room);
            }
        }
        if !encoded.is_empty() {
            kept += self.hasher.update(encoded, room);
        }
        // Each string is once in the batch's dictionary: its subscriptions
        // are the distinct indexes of the column.
        let mut seen = vec![false; batch.strings.len()];
        for &index in &batch.subscription_id {
            if std::mem::replace(&mut seen[index as usize], true) {
                continue;
            }
            let subscription = text(index);
            if let Entry::Vacant(entry) =
                self.subscriptions.entry(subscription.to_ascii_lowercase())
            {
                kept += 2 * subscription.len() + SUBSCRIPTION_OVERHEAD;
                entry.insert(subscription.to_owned());
            }
        }
        kept
    }

    /// The id of `subscription` as the store spells it, if the run was
    /// handed a row of it (ids compare ignoring ASCII case).
    pub fn spelling(&self, subscription: &str) -> Option<&str> {
        if subscription.len() > MAX_ID_LEN {
            return None; // no row has one; not folded (it may be huge)
        }
        self.subscriptions
            .get(&subscription.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The digest of the rows read so far, in lower-case hex (once the
    /// hashing thread, if any, has caught up).
    pub fn sha256_hex(&mut self) -> String {
        self.hasher
            .digest()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One row of a batch, its strings in a dictionary of its own.
    #[derive(Clone, Copy)]
    pub(crate) struct Row<'a> {
        subscription: &'a str,
        meter: &'a str,
        tags: &'a [(&'a str, &'a str)],
        start: i64,
        quantity: f64,
    }

    pub(crate) fn row<'a>(
        subscription: &'a str,
        meter: &'a str,
        start: i64,
        quantity: f64,
    ) -> Row<'a> {
        Row {
            subscription,
            meter,
            tags: &[],
            start,
            quantity,
        }
    }

    pub(crate) fn batch(rows: &[Row<'_>]) -> UsageBatch {
        let mut batch = UsageBatch {
            strings: vec![],
            subscription_id: vec![],
            meter_id: vec![],
            resource_uri: vec![],
            location: vec![],
            tags: vec![],
            additional_info: vec![],
            usage_start: vec![],
            usage_end: vec![],
            quantity: vec![],
            tag_sets: vec![],
        };
        let intern = |strings: &mut Vec<String>, s: &str| match strings.iter().position(|x| x == s)
        {
            Some(i) => i as u32,
            None => {
                strings.push(s.to_owned());
                strings.len() as u32 - 1
            }
        };
        for row in rows {
            batch
                .subscription_id
                .push(intern(&mut batch.strings, row.subscription));
            batch.meter_id.push(intern(&mut batch.strings, row.meter));
            let uri = format!("/subscriptions/{}/vms/web", row.subscription);
            batch.resource_uri.push(intern(&mut batch.strings, &uri));
            batch.location.push(intern(&mut batch.strings, "local"));
            batch.additional_info.push(intern(&mut batch.strings, "{}"));
            let set = row
                .tags
                .iter()
                .map(|(k, v)| (intern(&mut batch.strings, k), intern(&mut batch.strings, v)))
                .collect();
            batch.tag_sets.push(set);
            batch.tags.push(batch.tag_sets.len() as u32 - 1);
            batch.usage_start.push(row.start);
            batch.usage_end.push(row.start + 3_600);
            batch.quantity.push(row.quantity);
        }
        batch
    }

    fn digest_of(batches: &[&[Row<'_>]]) -> String {
        let mut read = UsageRead::default();
        for rows in batches {
            read.record(&batch(rows), usize::MAX);
        }
        read.sha256_hex()
    }

    #[test]
    fn reading_nothing_has_the_digest_of_nothing() {
        assert_eq!(
            UsageRead::default().sha256_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest_of(&[&[]]), UsageRead::default().sha256_hex());
    }

    /// The digest is of the rows in order, not of how they were batched.
    #[test]
    fn the_digest_does_not_depend_on_batch_boundaries() {
        let rows = [
            row("sub-a", "vm-hours", 0, 1.5),
            row("sub-a", "vm-hours", 3_600, 0.25),
            Row {
                tags: &[("env", "prod"), ("team", "a")],
                ..row("sub-b", "disk-gb", 0, 2.0)
            },
        ];
        let whole = digest_of(&[&rows]);
        assert_eq!(digest_of(&[&rows[..1], &rows[1..]]), whole);
        assert_eq!(digest_of(&[&rows[..2], &[], &rows[2..]]), whole);

        // Another order, or any field of a row changed, is another digest.
        assert_ne!(digest_of(&[&[rows[1], rows[0], rows[2]]]), whole);
        let first = rows[0];
        for changed in [
            Row {
                quantity: 1.5000001,
                ..first
            },
            Row {
                subscription: "Sub-a",
                ..first
            },
            Row {
                meter: "vm-hour",
                ..first
            },
            Row { start: 1, ..first },
            Row {
                tags: &[("env", "")],
                ..first
            },
        ] {
            assert_ne!(digest_of(&[&[changed, rows[1], rows[2]]]), whole);
        }
    }

    /// Field boundaries are in the digest: moving bytes from one field to
    /// the next changes it.
    #[test]
    fn the_digest_separates_fields() {
        assert_ne!(
            digest_of(&[&[row("sub-ab", "c", 0, 1.0)]]),
            digest_of(&[&[row("sub-a", "bc", 0, 1.0)]])
        );
    }

    /// The digest is the one the contract defines, byte for byte.
    #[test]
    fn the_digest_is_of_the_fields_as_specified() {
        let tagged = Row {
            tags: &[("env", "prod")],
            ..row("sub-a", "vm-hours", 7_200, 0.5)
        };
        let mut expected = Sha256::new();
        for text in [
            "sub-a",
            "vm-hours",
            "/subscriptions/sub-a/vms/web",
            "local",
            "{}",
        ] {
            expected.update((text.len() as u64).to_le_bytes());
            expected.update(text);
        }
        expected.update(1u64.to_le_bytes());
        for text in ["env", "prod"] {
            expected.update((text.len() as u64).to_le_bytes());
            expected.update(text);
        }
        expected.update(7_200i64.to_le_bytes());
        expected.update(10_800i64.to_le_bytes());
        expected.update(0.5f64.to_bits().to_le_bytes());
        let expected: String = expected
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest_of(&[&[tagged]]), expected);
    }

    #[test]
    fn subscriptions_read_are_kept_in_the_stores_spelling_and_charged_once() {
        let mut read = UsageRead::default();
        let kept = read.record(
            &batch(&[
                row("Sub-A", "vm-hours", 0, 1.0),
                row("Sub-A", "vm-hours", 3_600, 1.0),
            ]),
            usize::MAX,
        );
        assert_eq!(kept, 2 * "Sub-A".len() + SUBSCRIPTION_OVERHEAD);
        assert_eq!(
            read.record(&batch(&[row("Sub-A", "disk-gb", 0, 1.0)]), usize::MAX),
            0
        );
        assert_eq!(read.spelling("sub-a"), Some("Sub-A"));
        assert_eq!(read.spelling("SUB-A"), Some("Sub-A"));
        assert_eq!(read.spelling("sub-b"), None);
    }

    /// 3,000 hours of one subscription: more than a chunk of rows.
    fn large_read() -> Vec<Row<'static>> {
        (0..3_000)
            .map(|hour| row("sub-a", "vm-hours", hour * 3_600, hour as f64 / 8.0))
            .collect()
    }

    /// A read of more than a chunk is hashed on a thread of its own, charged
    /// to the run once, to the same digest as the same rows hashed in place
    /// (one small batch at a time).
    #[test]
    fn a_large_read_hashed_beside_the_run_has_the_same_digest() {
        let rows = large_read();
        let mut beside = UsageRead::default();
        let kept: usize = rows
            .chunks(1_000)
            .map(|rows| beside.record(&batch(rows), usize::MAX))
            .sum();
        assert!(matches!(beside.hasher, Hasher::Beside { .. }));
        assert_eq!(
            kept,
            2 * "sub-a".len() + SUBSCRIPTION_OVERHEAD + HASHER_BYTES
        );

        let mut in_place = UsageRead::default();
        for row in &rows {
            assert!(in_place.record(&batch(&[*row]), usize::MAX) < HASHER_BYTES);
        }
        assert!(matches!(in_place.hasher, Hasher::InPlace(_)));
        let digest = beside.sha256_hex();
        assert_eq!(digest, in_place.sha256_hex());
        // Asked again, or after more rows, it goes on from where it was.
        assert_eq!(beside.sha256_hex(), digest);
        beside.record(&batch(&rows[..1]), usize::MAX);
        in_place.record(&batch(&rows[..1]), usize::MAX);
        assert_eq!(beside.sha256_hex(), in_place.sha256_hex());
    }

    /// A run without room for the hashing thread's buffers (a small memory
    /// cap, mostly used) hashes a large read in place: charged nothing for
    /// a thread, to the same digest.
    #[test]
    fn a_large_read_without_room_for_the_thread_is_hashed_in_place() {
        let rows = large_read();
        let mut cramped = UsageRead::default();
        let kept: usize = rows
            .chunks(1_000)
            .map(|rows| cramped.record(&batch(rows), ROOM_TO_HASH_BESIDE - 1))
            .sum();
        assert!(matches!(cramped.hasher, Hasher::InPlace(_)));
        assert_eq!(kept, 2 * "sub-a".len() + SUBSCRIPTION_OVERHEAD);

        let mut roomy = UsageRead::default();
        for rows in rows.chunks(1_000) {
            roomy.record(&batch(rows), ROOM_TO_HASH_BESIDE);
        }
        assert!(matches!(roomy.hasher, Hasher::Beside { .. }));
        assert_eq!(cramped.sha256_hex(), roomy.sha256_hex());
    }
}
