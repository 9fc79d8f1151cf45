//! The installation's `[config]` table, checked.

use std::collections::HashMap;

use serde::Deserialize;

/// Longest issuer name, in characters.
pub const MAX_ISSUER_CHARS: usize = 200;

/// ISO 4217 currencies whose minor unit is not the cent: no decimals, or
/// three. Every other code is shown with two decimals.
const NO_DECIMALS: &str = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF";
const THREE_DECIMALS: &str = "BHD IQD JOD KWD LYD OMR TND";

/// The installation's `[config]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// ISO 4217: the currency of the rates and of every amount.
    pub currency: String,
    /// Meter id → unit price, per unit of the catalog's unit. Parsed with
    /// the ids as given; [`Config::parse`] keys them by lower-case id.
    pub rates: HashMap<String, f64>,
    /// Who issues the statement (the operator's name), shown at its top.
    pub issuer: Option<String>,
}

impl Config {
    /// Parses and checks a config; the error says what to fix.
    pub fn parse(json: &str) -> Result<Config, String> {
        let mut config: Config = serde_json::from_str(json).map_err(|e| format!("config: {e}"))?;
        if config.currency.len() != 3 || !config.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "config: currency '{}' is not an ISO 4217 code (three capitals, e.g. EUR)",
                config.currency
            ));
        }
        let mut rates = HashMap::new();
        let mut ids: Vec<&String> = config.rates.keys().collect();
        ids.sort();
        for meter in ids {
            let rate = config.rates[meter];
            if !rate.is_finite() || rate < 0.0 {
                return Err(format!(
                    "config: the rate of meter '{meter}' must be a non-negative number, not {rate}"
                ));
            }
            // Ids ignore case: two spellings of one meter would make its rate a coin toss.
            if rates.insert(meter.to_ascii_lowercase(), rate).is_some() {
                return Err(format!(
                    "config: the rate card names meter '{meter}' twice (ids ignore case)"
                ));
            }
        }
        config.rates = rates;
        if let Some(issuer) = &config.issuer
            && (issuer.trim().is_empty() || issuer.chars().count() > MAX_ISSUER_CHARS)
        {
            return Err(format!(
                "config: issuer must be 1 to {MAX_ISSUER_CHARS} characters, not blank"
            ));
        }
        Ok(config)
    }

    /// The unit price of a meter (its id in any case), or `None` when the
    /// rate card has none.
    pub fn rate(&self, meter_id: &str) -> Option<f64> {
        self.rates.get(&meter_id.to_ascii_lowercase()).copied()
    }

    /// Decimals of the currency's minor unit (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn decimals(&self) -> u32 {
        if NO_DECIMALS.split(' ').any(|code| code == self.currency) {
            0
        } else if THREE_DECIMALS.split(' ').any(|code| code == self.currency) {
            3
        } else {
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_is_checked_and_keyed_by_lower_case_meter() {
        let config =
            Config::parse(r#"{"currency":"JPY","rates":{"M-1":0.5},"issuer":"Contoso"}"#).unwrap();
        assert_eq!(config.rate("m-1"), Some(0.5));
        assert_eq!(config.rate("M-2"), None);
        assert_eq!(config.decimals(), 0);
        assert_eq!(
            Config::parse(r#"{"currency":"KWD","rates":{}}"#)
                .unwrap()
                .decimals(),
            3
        );
        for (json, expected) in [
            (r#"{"currency":"eur","rates":{}}"#, "ISO 4217"),
            (r#"{"currency":"EUR","rates":{"m":-1}}"#, "non-negative"),
            (r#"{"currency":"EUR","rates":{"m":1,"M":1}}"#, "twice"),
            (r#"{"currency":"EUR","rates":{},"issuer":" "}"#, "issuer"),
            (
                r#"{"currency":"EUR","rates":{},"colour":1}"#,
                "unknown field",
            ),
            (r#"{"currency":"EUR"}"#, "missing field `rates`"),
        ] {
            let error = Config::parse(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
