//! The explorer's table as CSV (RFC 4180), safe to open in a spreadsheet.

use super::SummaryRow;

/// The rows as CSV with a header line.
pub fn table(rows: &[SummaryRow]) -> String {
    let mut out = String::from("group,meter_id,meter_name,unit,quantity\r\n");
    for row in rows {
        for text in [&row.group, &row.meter_id, &row.meter_name, &row.unit] {
            field(&mut out, text);
            out.push(',');
        }
        out.push_str(&row.quantity.to_string());
        out.push_str("\r\n");
    }
    out
}

/// One text field: quoted when it holds a separator, a quote or a line
/// break; a leading `=`, `+`, `-` or `@` (which a spreadsheet would run as
/// a formula: tags come from reporters) is prefixed with `'`.
fn field(out: &mut String, text: &str) {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = formula || text.contains([',', '"', '\n', '\r']);
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in text.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quoted {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_defuses_formulas() {
        let row = |group: &str| SummaryRow {
            group: group.into(),
            meter_id: "m".into(),
            meter_name: "Name, long".into(),
            unit: "GB".into(),
            quantity: 1.5,
        };
        assert_eq!(
            table(&[row("=cmd()"), row("a\"b")]),
            "group,meter_id,meter_name,unit,quantity\r\n\
             \"'=cmd()\",m,\"Name, long\",GB,1.5\r\n\
             \"a\"\"b\",m,\"Name, long\",GB,1.5\r\n"
        );
    }
}
