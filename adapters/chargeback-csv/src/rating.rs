//! The chargeback transform itself, free of the component bindings, so the
//! host's benchmark can compile the very same code natively.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use tally_adapter_kit::{csv_field, iso_date};

pub const HEADER: &str =
    "date,group,subscription_id,meter_id,meter_name,unit,quantity,rate,cost,currency\n";
const UNALLOCATED: &str = "unallocated";

/// The installation's `[config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub currency: String,
    pub group_by_tag: String,
    pub rates: HashMap<String, f64>,
    /// Also write each subscription's rows as a document of its own,
    /// belonging to that subscription (`append-for`).
    #[serde(default)]
    pub per_subscription: bool,
}

impl Config {
    pub fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("config: {e}"))?;
        if config.currency.len() != 3 || !config.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "config: currency '{}' is not an ISO 4217 code",
                config.currency
            ));
        }
        if config.group_by_tag.trim().is_empty() {
            return Err("config: group_by_tag must not be empty".into());
        }
        if let Some((meter, rate)) = config
            .rates
            .iter()
            .find(|(_, r)| !r.is_finite() || **r < 0.0)
        {
            return Err(format!(
                "config: the rate of meter '{meter}' must be a non-negative number, not {rate}"
            ));
        }
        // Meter ids ignore case: two spellings of one meter would make its rate a coin toss.
        let mut ids: Vec<&String> = config.rates.keys().collect();
        ids.sort();
        for (i, a) in ids.iter().enumerate() {
            if let Some(b) = ids[i + 1..].iter().find(|b| b.eq_ignore_ascii_case(a)) {
                return Err(format!(
                    "config: the rate card names meter '{a}' twice ('{a}' and '{b}'; ids ignore case)"
                ));
            }
        }
        Ok(config)
    }

    fn rate(&self, meter_id: &str) -> Option<f64> {
        self.rates
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(meter_id))
            .map(|(_, rate)| *rate)
    }
}

/// The columns of a usage batch that chargeback reads.
pub struct Columns<'a> {
    pub strings: &'a [String],
    pub tag_sets: &'a [Vec<(u32, u32)>],
    pub subscription_id: &'a [u32],
    pub meter_id: &'a [u32],
    pub tags: &'a [u32],
    pub usage_start: &'a [i64],
    pub quantity: &'a [f64],
}

/// The [`Columns`] of a `usage-batch`, whichever bindings generated its type
/// (the component's, or the host's in the native benchmark).
macro_rules! columns_of {
    ($batch:expr) => {
        $crate::rating::Columns {
            strings: &$batch.strings,
            tag_sets: &$batch.tag_sets,
            subscription_id: &$batch.subscription_id,
            meter_id: &$batch.meter_id,
            tags: &$batch.tags,
            usage_start: &$batch.usage_start,
            quantity: &$batch.quantity,
        }
    };
}
pub(crate) use columns_of;

/// Bytes of CSV handed over at a time.
pub const PIECE_BYTES: usize = 64 * 1024;

/// An output row's key: usage day, group, subscription, meter.
type RowKey<'a> = (i64, &'a str, &'a str, &'a str);

/// Quantities summed per usage day, group, subscription and meter.
///
/// Names are interned once per batch, so rows add up without allocating.
#[derive(Default)]
pub struct Chargeback {
    /// (usage day, group, subscription, meter) as interned names → quantity.
    quantities: HashMap<(i64, u32, u32, u32), f64>,
    names: Vec<String>,
    ids: HashMap<String, u32>,
    pub rows_read: u64,
}

impl Chargeback {
    /// Adds a batch.
    pub fn add(&mut self, batch: &Columns<'_>, group_by_tag: &str) {
        // Each batch string used as a key, interned on first use.
        let mut global: Vec<Option<u32>> = vec![None; batch.strings.len()];
        let mut id_of = |this: &mut Self, local: u32| -> u32 {
            *global[local as usize]
                .get_or_insert_with(|| this.intern(&batch.strings[local as usize]))
        };
        let unallocated = self.intern(UNALLOCATED);
        let groups: Vec<u32> = batch
            .tag_sets
            .iter()
            .map(|set| {
                match set
                    .iter()
                    .find(|(k, _)| batch.strings[*k as usize] == group_by_tag)
                {
                    Some((_, value)) => id_of(self, *value),
                    None => unallocated,
                }
            })
            .collect();
        for row in 0..batch.quantity.len() {
            let key = (
                batch.usage_start[row].div_euclid(86_400),
                groups[batch.tags[row] as usize],
                id_of(self, batch.subscription_id[row]),
                id_of(self, batch.meter_id[row]),
            );
            *self.quantities.entry(key).or_default() += batch.quantity[row];
        }
        self.rows_read += batch.quantity.len() as u64;
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// Output rows so far.
    pub fn rows(&self) -> usize {
        self.quantities.len()
    }

    /// The output rows ordered by day, group, subscription and meter.
    fn sorted_rows(&self) -> Vec<(RowKey<'_>, f64)> {
        let name = |id: u32| self.names[id as usize].as_str();
        let mut rows: Vec<(RowKey<'_>, f64)> = self
            .quantities
            .iter()
            .map(|(&(day, g, s, m), &q)| ((day, name(g), name(s), name(m)), q))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// The CSV, rows ordered by day, group, subscription and meter, handed
    /// to `write` in pieces of about [`PIECE_BYTES`] (the whole document is
    /// never held at once); returns the meters that had no rate (exported
    /// at 0). `catalog` maps lower-case meter ids to (name, unit).
    pub fn render<E>(
        &self,
        config: &Config,
        catalog: &HashMap<String, (String, String)>,
        mut write: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<BTreeSet<String>, E> {
        let mut unrated = BTreeSet::new();
        let mut piece = String::with_capacity(PIECE_BYTES + 1024);
        piece.push_str(HEADER);
        for (key, quantity) in self.sorted_rows() {
            if !write_row(&mut piece, config, catalog, key, quantity) {
                unrated.insert(key.3.to_owned());
            }
            if piece.len() >= PIECE_BYTES {
                write(&piece)?;
                piece.clear();
            }
        }
        if !piece.is_empty() {
            write(&piece)?;
        }
        Ok(unrated)
    }

    /// Each subscription's own CSV: the header, then the rows of
    /// [`Chargeback::render`] that are the subscription's, in the same
    /// order. Subscriptions come one after the other, in the order of their
    /// ids (as spelled, byte by byte); each CSV is handed to
    /// `write(subscription, piece)` in pieces of about [`PIECE_BYTES`].
    pub fn render_per_subscription<E>(
        &self,
        config: &Config,
        catalog: &HashMap<String, (String, String)>,
        mut write: impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rows = self.sorted_rows();
        // Stable: each subscription's rows keep the order of the whole CSV.
        rows.sort_by(|a, b| a.0.2.cmp(b.0.2));
        let mut piece = String::with_capacity(PIECE_BYTES + 1024);
        let mut current: Option<&str> = None;
        for (key, quantity) in rows {
            let subscription = key.2;
            if current != Some(subscription) {
                if let Some(previous) = current {
                    write(previous, &piece)?;
                    piece.clear();
                }
                current = Some(subscription);
                piece.push_str(HEADER);
            }
            write_row(&mut piece, config, catalog, key, quantity);
            if piece.len() >= PIECE_BYTES {
                write(subscription, &piece)?;
                piece.clear();
            }
        }
        match current {
            Some(last) if !piece.is_empty() => write(last, &piece),
            _ => Ok(()),
        }
    }
}

/// Appends one output row; returns whether its meter has a rate (one
/// without is rated at 0).
fn write_row(
    piece: &mut String,
    config: &Config,
    catalog: &HashMap<String, (String, String)>,
    (day, group, subscription, meter): RowKey<'_>,
    quantity: f64,
) -> bool {
    let rated = config.rate(meter);
    let rate = rated.unwrap_or(0.0);
    let (meter_name, unit) = catalog
        .get(&meter.to_ascii_lowercase())
        .cloned()
        .unwrap_or_default();
    use std::fmt::Write as _;
    let _ = writeln!(
        piece,
        "{},{},{},{},{},{},{:.6},{:.6},{:.6},{}",
        iso_date(day),
        csv_field(group),
        csv_field(subscription),
        csv_field(meter),
        csv_field(&meter_name),
        csv_field(&unit),
        quantity,
        rate,
        quantity * rate,
        config.currency
    );
    rated.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        assert!(Config::parse(r#"{"currency":"EUR","group_by_tag":"cc","rates":{}}"#).is_ok());
        assert!(Config::parse(r#"{"currency":"euro","group_by_tag":"cc","rates":{}}"#).is_err());
        assert!(
            Config::parse(r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":-1}}"#).is_err()
        );
        assert!(
            Config::parse(r#"{"currency":"EUR","group_by_tag":"cc","rates":{},"x":1}"#).is_err()
        );
        let per_subscription =
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{},"per_subscription":true}"#;
        assert!(Config::parse(per_subscription).unwrap().per_subscription);
        assert!(
            !Config::parse(r#"{"currency":"EUR","group_by_tag":"cc","rates":{}}"#)
                .unwrap()
                .per_subscription
        );
    }

    #[test]
    fn each_subscription_gets_its_rows_of_the_whole_csv() {
        let config =
            Config::parse(r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":0.5}}"#).unwrap();
        let strings: Vec<String> = ["s-b", "s-a", "m", "cc", "x"].map(String::from).into();
        let tag_sets = vec![vec![], vec![(3, 4)]];
        let mut chargeback = Chargeback::default();
        chargeback.add(
            &Columns {
                strings: &strings,
                tag_sets: &tag_sets,
                subscription_id: &[0, 1, 0, 1],
                meter_id: &[2, 2, 2, 2],
                tags: &[0, 0, 1, 0],
                usage_start: &[0, 0, 86_400, 86_400],
                quantity: &[1.0, 2.0, 3.0, 4.0],
            },
            "cc",
        );
        let catalog = HashMap::new();
        let mut whole = String::new();
        chargeback
            .render(&config, &catalog, |piece| {
                whole.push_str(piece);
                Ok::<_, ()>(())
            })
            .unwrap();
        let mut documents: Vec<(String, String)> = Vec::new();
        chargeback
            .render_per_subscription(&config, &catalog, |subscription, piece| {
                match documents.last_mut() {
                    Some((last, text)) if last == subscription => text.push_str(piece),
                    _ => documents.push((subscription.to_owned(), piece.to_owned())),
                }
                Ok::<_, ()>(())
            })
            .unwrap();
        let names: Vec<&str> = documents.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["s-a", "s-b"]);
        for (subscription, text) in &documents {
            let expected: String = std::iter::once(HEADER.trim_end())
                .chain(
                    whole
                        .lines()
                        .filter(|l| l.split(',').nth(2) == Some(subscription.as_str())),
                )
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(text, &expected);
            assert_eq!(text.lines().count(), 3, "{text}");
        }
    }
}
