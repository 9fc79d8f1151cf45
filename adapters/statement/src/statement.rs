//! A window's usage summed per subscription and meter, and each
//! subscription's statement lines, rated: free of the component bindings.

use std::collections::HashMap;

use crate::config::Config;

/// The columns of a usage batch a statement reads (row `i` is element `i`).
pub struct Columns<'a> {
    pub strings: &'a [String],
    pub subscription_id: &'a [u32],
    pub meter_id: &'a [u32],
    pub quantity: &'a [f64],
}

/// Quantities summed per subscription and meter, over the window's batches.
///
/// Ids are compared ignoring ASCII case (as the host compares them); each is
/// kept in its smallest spelling seen, so the result does not depend on the
/// order rows come in.
#[derive(Default)]
pub struct Usage {
    subscriptions: Vec<Subscription>,
    /// Lower-case subscription id → `subscriptions`.
    subscription_index: HashMap<String, usize>,
    /// Meter ids as spelled (the smallest spelling seen).
    meters: Vec<String>,
    /// Lower-case meter id → `meters`.
    meter_index: HashMap<String, usize>,
    /// Usage rows added.
    pub rows_read: u64,
}

struct Subscription {
    id: String,
    /// `meters` index → quantity, summed in the order rows came.
    quantities: HashMap<usize, f64>,
}

/// One line of a statement: a subscription's use of a meter, rated.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// In the catalog's spelling.
    pub meter_id: String,
    /// From the catalog; the id for a meter it does not know.
    pub meter_name: String,
    /// From the catalog; empty for a meter it does not know.
    pub unit: String,
    /// The quantity in millionths of the unit (rounded half away from zero).
    pub quantity_micros: i128,
    /// The unit price, or `None` when the rate card has none (listed at 0).
    pub unit_price: Option<f64>,
    /// The rounded quantity times the unit price, in the currency's minor
    /// unit (cents), rounded half away from zero.
    pub amount_minor: i128,
}

/// A subscription's statement for the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The subscription id as the usage spells it.
    pub subscription: String,
    /// Ordered by meter name, then id.
    pub lines: Vec<Line>,
    /// The sum of the lines' amounts, in the currency's minor unit.
    pub total_minor: i128,
}

impl Statement {
    /// The lines whose meter has no rate.
    pub fn unrated(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|line| line.unit_price.is_none())
    }
}

impl Usage {
    /// Adds a batch.
    pub fn add(&mut self, batch: &Columns<'_>) {
        // Each batch string resolved once: its subscription or meter slot.
        let mut subscription_of: Vec<Option<usize>> = vec![None; batch.strings.len()];
        let mut meter_of: Vec<Option<usize>> = vec![None; batch.strings.len()];
        for row in 0..batch.quantity.len() {
            let s = batch.subscription_id[row] as usize;
            let subscription = *subscription_of[s]
                .get_or_insert_with(|| self.subscription_slot(&batch.strings[s]));
            let m = batch.meter_id[row] as usize;
            let meter = *meter_of[m].get_or_insert_with(|| self.meter_slot(&batch.strings[m]));
            *self.subscriptions[subscription]
                .quantities
                .entry(meter)
                .or_default() += batch.quantity[row];
        }
        self.rows_read += batch.quantity.len() as u64;
    }

    fn subscription_slot(&mut self, id: &str) -> usize {
        let key = id.to_ascii_lowercase();
        match self.subscription_index.get(&key) {
            Some(&slot) => {
                let known = &mut self.subscriptions[slot].id;
                if id < known.as_str() {
                    *known = id.to_owned();
                }
                slot
            }
            None => {
                self.subscriptions.push(Subscription {
                    id: id.to_owned(),
                    quantities: HashMap::new(),
                });
                self.subscription_index
                    .insert(key, self.subscriptions.len() - 1);
                self.subscriptions.len() - 1
            }
        }
    }

    fn meter_slot(&mut self, id: &str) -> usize {
        let key = id.to_ascii_lowercase();
        match self.meter_index.get(&key) {
            Some(&slot) => {
                if id < self.meters[slot].as_str() {
                    self.meters[slot] = id.to_owned();
                }
                slot
            }
            None => {
                self.meters.push(id.to_owned());
                self.meter_index.insert(key, self.meters.len() - 1);
                self.meters.len() - 1
            }
        }
    }

    /// Subscriptions read so far.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.len()
    }

    /// Each subscription's statement, in the order of their lower-case ids,
    /// built one at a time (only one is held at once by a caller that
    /// writes each before taking the next). `catalog` maps lower-case meter
    /// ids to (name, unit).
    pub fn statements<'a>(
        &'a self,
        config: &'a Config,
        catalog: &'a HashMap<String, (String, String)>,
    ) -> impl Iterator<Item = Statement> + 'a {
        let mut order: Vec<(&String, &usize)> = self.subscription_index.iter().collect();
        order.sort();
        order
            .into_iter()
            .map(move |(_, &slot)| self.statement(&self.subscriptions[slot], config, catalog))
    }

    fn statement(
        &self,
        subscription: &Subscription,
        config: &Config,
        catalog: &HashMap<String, (String, String)>,
    ) -> Statement {
        let scale = 10f64.powi(config.decimals() as i32);
        let mut lines: Vec<Line> = subscription
            .quantities
            .iter()
            .map(|(&meter, &quantity)| {
                let meter_id = &self.meters[meter];
                let (meter_name, unit) = catalog
                    .get(&meter_id.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| (meter_id.clone(), String::new()));
                let unit_price = config.rate(meter_id);
                // The amount is the quantity as shown times the price as
                // shown, so a reader can recompute every line.
                let quantity_micros = (quantity * 1e6).round() as i128;
                let amount = quantity_micros as f64 * unit_price.unwrap_or(0.0) * scale / 1e6;
                Line {
                    meter_id: meter_id.clone(),
                    meter_name,
                    unit,
                    quantity_micros,
                    unit_price,
                    amount_minor: amount.round() as i128,
                }
            })
            .collect();
        lines.sort_by(|a, b| {
            (a.meter_name.as_str(), a.meter_id.as_str())
                .cmp(&(b.meter_name.as_str(), b.meter_id.as_str()))
        });
        Statement {
            subscription: subscription.id.clone(),
            total_minor: lines.iter().map(|line| line.amount_minor).sum(),
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn batch(rows: &[(&str, &str, f64)]) -> (Vec<String>, Vec<u32>, Vec<u32>, Vec<f64>) {
        let mut strings: Vec<String> = Vec::new();
        let mut index = |s: &str| match strings.iter().position(|known| known == s) {
            Some(i) => i as u32,
            None => {
                strings.push(s.to_owned());
                strings.len() as u32 - 1
            }
        };
        let (mut subscriptions, mut meters, mut quantities) = (vec![], vec![], vec![]);
        for (subscription, meter, quantity) in rows {
            subscriptions.push(index(subscription));
            meters.push(index(meter));
            quantities.push(*quantity);
        }
        (strings, subscriptions, meters, quantities)
    }

    pub(crate) fn add(usage: &mut Usage, rows: &[(&str, &str, f64)]) {
        let (strings, subscription_id, meter_id, quantity) = batch(rows);
        usage.add(&Columns {
            strings: &strings,
            subscription_id: &subscription_id,
            meter_id: &meter_id,
            quantity: &quantity,
        });
    }

    #[test]
    fn usage_sums_per_subscription_and_meter_ignoring_case_and_rates_each_line() {
        let config =
            Config::parse(r#"{"currency":"EUR","rates":{"vm":0.025,"DISK":1.005}}"#).unwrap();
        let catalog: HashMap<String, (String, String)> = [
            (
                "vm".to_string(),
                ("VM hours".to_string(), "Hours".to_string()),
            ),
            (
                "disk".to_string(),
                ("Disk".to_string(), "GB*months".to_string()),
            ),
        ]
        .into();
        let mut usage = Usage::default();
        add(
            &mut usage,
            &[
                ("sub-b", "VM", 10.0),
                ("SUB-A", "vm", 100.0),
                ("sub-a", "VM", 20.5),
                ("sub-a", "disk", 3.0),
            ],
        );
        add(&mut usage, &[("sub-a", "ip", 7.0), ("sub-b", "VM", 0.25)]);
        assert_eq!((usage.rows_read, usage.subscriptions()), (6, 2));
        let statements: Vec<Statement> = usage.statements(&config, &catalog).collect();
        let a = &statements[0];
        // The smallest spelling of a subscription and of a meter.
        assert_eq!(a.subscription, "SUB-A");
        let names: Vec<&str> = a.lines.iter().map(|l| l.meter_name.as_str()).collect();
        assert_eq!(names, ["Disk", "VM hours", "ip"]);
        assert_eq!(a.lines[1].meter_id, "VM");
        assert_eq!(a.lines[1].quantity_micros, 120_500_000);
        // 120.5 × 0.025 = 3.0125 → 3.01; 3 × 1.005 = 3.015 → 3.01 or 3.02 by
        // the binary value of 1.005 (3.0149999…): 3.01.
        assert_eq!(a.lines[1].amount_minor, 301);
        assert_eq!(a.lines[0].amount_minor, 301);
        // A meter without a rate: listed at 0, named by its id.
        assert_eq!(
            (
                a.lines[2].unit_price,
                a.lines[2].amount_minor,
                a.lines[2].unit.as_str()
            ),
            (None, 0, "")
        );
        assert_eq!(a.unrated().count(), 1);
        assert_eq!(a.total_minor, 602);
        let b = &statements[1];
        assert_eq!(
            (
                b.subscription.as_str(),
                b.lines[0].quantity_micros,
                b.total_minor
            ),
            ("sub-b", 10_250_000, 26)
        );
    }
}
