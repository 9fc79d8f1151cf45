//! A statement as a page a person reads (self-contained HTML: inline CSS, no
//! script, nothing fetched, fit to print) and as CSV.

use std::fmt::Write as _;

use tally_adapter_kit::{civil_from_days, csv_field, days_from_civil, iso_date};

use crate::config::Config;
use crate::statement::{Line, Statement};

const DAY: i64 = 86_400;
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The CSV's header. `line` is `usage`, `unrated` (a meter without a rate,
/// listed at 0) or `total` (the last row: the statement's total).
pub const CSV_HEADER: &str = "line,subscription_id,period_start,period_end,meter_id,meter_name,\
    unit,quantity,unit_price,amount,currency\n";

/// The reported-time window a statement covers: `[start, end)`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Period {
    /// How a person reads it: `November 2026` for a calendar month,
    /// `2026-11-01 to 2026-11-03` for whole days (the last day included),
    /// else the times, UTC.
    pub fn label(&self) -> String {
        let (year, month, day) = civil_from_days(self.start.div_euclid(DAY));
        let whole_days = self.start.rem_euclid(DAY) == 0 && self.end.rem_euclid(DAY) == 0;
        let next_month = if month == 12 {
            days_from_civil(year + 1, 1, 1)
        } else {
            days_from_civil(year, month + 1, 1)
        };
        if whole_days && day == 1 && self.end == next_month * DAY {
            format!("{} {year}", MONTHS[month as usize - 1])
        } else if whole_days {
            format!(
                "{} to {}",
                iso_date(self.start / DAY),
                iso_date(self.end / DAY - 1)
            )
        } else {
            format!("{} to {} UTC", time(self.start), time(self.end))
        }
    }

    /// What the period is, in words, for the page's fine print.
    fn detail(&self) -> String {
        format!(
            "usage reported from {} up to {} UTC",
            time(self.start),
            time(self.end)
        )
    }
}

/// `YYYY-MM-DD HH:MM` of Unix seconds.
fn time(seconds: i64) -> String {
    let second = seconds.rem_euclid(DAY);
    format!(
        "{} {:02}:{:02}",
        iso_date(seconds.div_euclid(DAY)),
        second / 3_600,
        second / 60 % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
fn iso_time(seconds: i64) -> String {
    let second = seconds.rem_euclid(DAY);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        iso_date(seconds.div_euclid(DAY)),
        second / 3_600,
        second / 60 % 60,
        second % 60
    )
}

/// A fixed-point number: `units` in `10^-scale`, as `1234.56`, or
/// `1,234.56` when `grouped`.
pub fn decimal(units: i128, scale: u32, grouped: bool) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let divisor = 10u128.pow(scale);
    let whole = (abs / divisor).to_string();
    let whole = if grouped { group(&whole) } else { whole };
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!(
            "{sign}{whole}.{:0width$}",
            abs % divisor,
            width = scale as usize
        )
    }
}

/// Digits grouped by thousands: `1234567` → `1,234,567`.
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A quantity for reading: grouped, trailing zeros dropped (`1,234.5`).
fn quantity(micros: i128) -> String {
    let text = decimal(micros, 6, true);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A unit price as the rate card gives it (Rust's shortest round-trip
/// form, no exponent), or `0` for an unrated meter.
fn unit_price(line: &Line) -> String {
    line.unit_price.unwrap_or(0.0).to_string()
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's style: readable on a screen, and on paper (A4 or Letter)
/// without the screen's frame.
const STYLE: &str = "\
:root{color-scheme:light}\
*{box-sizing:border-box}\
body{margin:0;background:#f3f4f6;color:#111827;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
main{max-width:820px;margin:32px auto;padding:40px 48px;background:#fff;border:1px solid #e5e7eb;border-radius:8px}\
header{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;border-bottom:2px solid #111827;padding-bottom:16px;margin-bottom:24px}\
.issuer{font-size:14px;font-weight:600;color:#374151;margin:0 0 4px}\
h1{font-size:26px;margin:0;letter-spacing:.01em}\
.period{font-size:18px;margin:2px 0 0;color:#374151}\
.due{text-align:right}\
.due .label{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:#6b7280}\
.due .amount{font-size:26px;font-weight:700;white-space:nowrap}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0 0 24px}\
dt{color:#6b7280}\
dd{margin:0;overflow-wrap:anywhere}\
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
.lines{overflow-x:auto}\
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}\
th,td{padding:8px 10px;border-bottom:1px solid #e5e7eb;vertical-align:top;text-align:left}\
thead th{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:#6b7280;border-bottom:1px solid #9ca3af}\
.num{text-align:right;white-space:nowrap}\
tbody td:first-child{min-width:11em}\
.id{display:block;color:#6b7280;font-size:12px;overflow-wrap:anywhere}\
.unrated td{color:#92400e}\
.flag{display:inline-block;margin-left:6px;padding:0 6px;border:1px solid #d97706;border-radius:4px;font-size:11px;text-transform:uppercase;letter-spacing:.05em}\
tfoot th,tfoot td{border-top:2px solid #111827;border-bottom:none;font-weight:700;font-size:16px}\
.note,footer{color:#4b5563;font-size:13px}\
footer{margin-top:32px;border-top:1px solid #e5e7eb;padding-top:12px}\
@page{margin:16mm}\
@media print{body{background:#fff;font-size:11pt}main{margin:0;padding:0;border:none;max-width:none}\
tr{break-inside:avoid}thead{display:table-header-group}.flag{border-color:#000}}\
@media (max-width:640px){body{background:#fff}main{margin:0;padding:20px;border:none;border-radius:0}\
header{flex-direction:column}.due{text-align:left}th,td{padding:6px}}";

/// The statement as a self-contained HTML page.
pub fn html(statement: &Statement, config: &Config, period: &Period) -> String {
    let decimals = config.decimals();
    let currency = escape(&config.currency);
    let label = escape(&period.label());
    let subscription = escape(&statement.subscription);
    let total = decimal(statement.total_minor, decimals, true);
    let mut page = String::with_capacity(8192);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Statement {label} \u{2013} {subscription}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<header>\n<div>\n"
    );
    if let Some(issuer) = &config.issuer {
        let _ = writeln!(page, "<p class=\"issuer\">{}</p>", escape(issuer));
    }
    let _ = write!(
        page,
        "<h1>Statement</h1>\n<p class=\"period\">{label}</p>\n</div>\n\
         <div class=\"due\"><div class=\"label\">Total</div><div class=\"amount\">{total} {currency}</div></div>\n\
         </header>\n<dl>\n<dt>Subscription</dt><dd><code>{subscription}</code></dd>\n\
         <dt>Period</dt><dd>{label}: {}</dd>\n<dt>Currency</dt><dd>{currency}</dd>\n</dl>\n",
        escape(&period.detail())
    );
    page.push_str(
        "<div class=\"lines\">\n<table>\n<thead><tr><th scope=\"col\">Meter</th><th scope=\"col\">Unit</th>\
         <th scope=\"col\" class=\"num\">Quantity</th><th scope=\"col\" class=\"num\">Unit price</th>\
         <th scope=\"col\" class=\"num\">Amount</th></tr></thead>\n<tbody>\n",
    );
    for line in &statement.lines {
        let (class, flag) = match line.unit_price {
            Some(_) => ("", ""),
            None => (" class=\"unrated\"", "<span class=\"flag\">unrated</span>"),
        };
        let _ = writeln!(
            page,
            "<tr{class}><td>{}<span class=\"id\">{}</span></td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}{flag}</td><td class=\"num\">{}</td></tr>",
            escape(&line.meter_name),
            escape(&line.meter_id),
            escape(&line.unit),
            quantity(line.quantity_micros),
            unit_price(line),
            decimal(line.amount_minor, decimals, true),
        );
    }
    let _ = write!(
        page,
        "</tbody>\n<tfoot><tr><th scope=\"row\" colspan=\"4\">Total ({currency})</th>\
         <td class=\"num\">{total}</td></tr></tfoot>\n</table>\n</div>\n"
    );
    let unrated: Vec<String> = statement
        .unrated()
        .map(|line| escape(&line.meter_name))
        .collect();
    if !unrated.is_empty() {
        let _ = writeln!(
            page,
            "<p class=\"note\">Unrated: the rate card has no price for {}, listed at 0.</p>",
            unrated.join(", ")
        );
    }
    let _ = write!(
        page,
        "<footer>Quantities are rounded to millionths of their unit; each amount is the quantity \
         shown times the unit price, rounded to the {currency} minor unit, and the total is the \
         sum of the amounts. Times are UTC.</footer>\n</main>\n</body>\n</html>\n"
    );
    page
}

/// The statement as CSV: one row per line, then the total.
pub fn csv(statement: &Statement, config: &Config, period: &Period) -> String {
    let decimals = config.decimals();
    let subscription = csv_field(&statement.subscription);
    let (start, end) = (iso_time(period.start), iso_time(period.end));
    let mut out = String::from(CSV_HEADER);
    for line in &statement.lines {
        let kind = if line.unit_price.is_some() {
            "usage"
        } else {
            "unrated"
        };
        let _ = writeln!(
            out,
            "{kind},{subscription},{start},{end},{},{},{},{},{},{},{}",
            csv_field(&line.meter_id),
            csv_field(&line.meter_name),
            csv_field(&line.unit),
            decimal(line.quantity_micros, 6, false),
            unit_price(line),
            decimal(line.amount_minor, decimals, false),
            config.currency,
        );
    }
    let _ = writeln!(
        out,
        "total,{subscription},{start},{end},,,,,,{},{}",
        decimal(statement.total_minor, decimals, false),
        config.currency
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> (Statement, Config) {
        let config = Config::parse(
            r#"{"currency":"EUR","rates":{"m1":1234.5},"issuer":"Contoso <Cloud> & \"Co\""}"#,
        )
        .unwrap();
        let lines = vec![
            Line {
                meter_id: "M1".into(),
                meter_name: "VM <hours>".into(),
                unit: "Hours".into(),
                quantity_micros: 1_500_000_000,
                unit_price: Some(1234.5),
                amount_minor: 185_175_000,
            },
            Line {
                meter_id: "m2".into(),
                meter_name: "Egress, \"fast\"".into(),
                unit: String::new(),
                quantity_micros: 250_000,
                unit_price: None,
                amount_minor: 0,
            },
        ];
        let statement = Statement {
            subscription: "sub-<a>".into(),
            total_minor: 185_175_000,
            lines,
        };
        (statement, config)
    }

    const NOVEMBER: Period = Period {
        start: 1_793_491_200, // 2026-11-01
        end: 1_796_083_200,   // 2026-12-01
    };

    #[test]
    fn periods_read_as_months_days_or_times() {
        assert_eq!(NOVEMBER.label(), "November 2026");
        let december = Period {
            start: 1_796_083_200,
            end: 1_796_083_200 + 31 * DAY,
        };
        assert_eq!(december.label(), "December 2026");
        let days = Period {
            start: NOVEMBER.start,
            end: NOVEMBER.start + 3 * DAY,
        };
        assert_eq!(days.label(), "2026-11-01 to 2026-11-03");
        let hour = Period {
            start: NOVEMBER.start + 3_600,
            end: NOVEMBER.start + 7_200,
        };
        assert_eq!(hour.label(), "2026-11-01 01:00 to 2026-11-01 02:00 UTC");
    }

    #[test]
    fn numbers_are_fixed_point_and_grouped_for_reading() {
        assert_eq!(decimal(185_175_000, 2, true), "1,851,750.00");
        assert_eq!(decimal(185_175_000, 2, false), "1851750.00");
        assert_eq!(decimal(-5, 2, false), "-0.05");
        assert_eq!(decimal(1234, 0, true), "1,234");
        assert_eq!(decimal(7, 3, false), "0.007");
        assert_eq!(quantity(1_500_000_000), "1,500");
        assert_eq!(quantity(250_000), "0.25");
        assert_eq!(quantity(0), "0");
    }

    #[test]
    fn the_page_is_self_contained_escaped_and_complete() {
        let (statement, config) = statement();
        let page = html(&statement, &config, &NOVEMBER);
        for expected in [
            "<title>Statement November 2026 \u{2013} sub-&lt;a&gt;</title>",
            "<p class=\"issuer\">Contoso &lt;Cloud&gt; &amp; &quot;Co&quot;</p>",
            "<code>sub-&lt;a&gt;</code>",
            "November 2026: usage reported from 2026-11-01 00:00 up to 2026-12-01 00:00 UTC",
            "<td>VM &lt;hours&gt;<span class=\"id\">M1</span></td><td>Hours</td>\
             <td class=\"num\">1,500</td><td class=\"num\">1234.5</td><td class=\"num\">1,851,750.00</td>",
            "<tr class=\"unrated\"><td>Egress, &quot;fast&quot;<span class=\"id\">m2</span>",
            "<td class=\"num\">0<span class=\"flag\">unrated</span></td><td class=\"num\">0.00</td>",
            "Total (EUR)</th><td class=\"num\">1,851,750.00</td>",
            "<div class=\"amount\">1,851,750.00 EUR</div>",
            "the rate card has no price for Egress, &quot;fast&quot;, listed at 0.",
            "@media print",
        ] {
            assert!(page.contains(expected), "{expected:?} not in\n{page}");
        }
        for absent in ["<script", "src=", "href=", "url(", "@import", "<a>"] {
            assert!(!page.contains(absent), "{absent:?} in the page");
        }
    }

    #[test]
    fn the_csv_has_a_row_per_line_and_the_total() {
        let (statement, config) = statement();
        assert_eq!(
            csv(&statement, &config, &NOVEMBER),
            format!(
                "{CSV_HEADER}\
                 usage,sub-<a>,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,M1,VM <hours>,Hours,1500.000000,1234.5,1851750.00,EUR\n\
                 unrated,sub-<a>,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,m2,\"Egress, \"\"fast\"\"\",,0.250000,0,0.00,EUR\n\
                 total,sub-<a>,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,,,,,,1851750.00,EUR\n"
            )
        );
    }
}
