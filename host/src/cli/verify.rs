//! `tally export verify NAME --from --to`: re-derive the documents of an
//! adapter's exported windows on a running host and compare them with what
//! was published; exits with 1 unless every window matches.

use anyhow::bail;
use reqwest::Method;

use super::client::{HostArgs, HostClient};
use super::printable::printable;
use crate::exports::verify::{DocumentResult, VerifyReport, WindowResult};

/// Arguments of `tally export verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The installation's name.
    name: String,
    /// Windows starting from here (ISO-8601 time or date).
    #[arg(long)]
    from: String,
    /// …and before here (exclusive).
    #[arg(long)]
    to: String,
    #[command(flatten)]
    host: HostArgs,
}

/// Runs `tally export verify`.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let client = HostClient::new(args.host);
    let path = format!("/v1/adapters/{}/verify", args.name);
    let request = client
        .request(Method::POST, &path)?
        .query(&[("from", &args.from), ("to", &args.to)]);
    let report: VerifyReport = client.json(request).await?;
    for line in report_lines(&report) {
        println!("{line}");
    }
    if !report.verified {
        bail!("{}", verdict(&report));
    }
    Ok(())
}

/// What the report says, one line per window and one per document that
/// does not match (with where it first differs), then the verdict.
fn report_lines(report: &VerifyReport) -> Vec<String> {
    let mut lines = Vec::new();
    for window in &report.windows {
        let result = match window.result {
            WindowResult::Match => "match",
            WindowResult::Mismatch => "mismatch",
            WindowResult::Unverifiable => "unverifiable",
            WindowResult::Failed => "failed",
        };
        let mut line = format!(
            "window {} .. {} (run {}, revision {}): {result}",
            window.window.start.to_rfc3339(),
            window.window.end.to_rfc3339(),
            window.run_id,
            window.revision
        );
        if let Some(reason) = &window.reason {
            line.push_str(&format!(": {}", printable(reason)));
        }
        lines.push(line);
        if let Some(usage) = window.usage.as_ref().filter(|u| !u.matches) {
            lines.push(format!(
                "  usage: recorded {}, now {}",
                printable(&usage.recorded),
                printable(&usage.now)
            ));
        }
        for document in &window.documents {
            let result = match document.result {
                DocumentResult::Match => continue,
                DocumentResult::Differs => "differs",
                DocumentResult::Missing => "missing (published, not written again)",
                DocumentResult::Unexpected => "unexpected (written again, not published)",
            };
            let owner = document
                .subscription_id
                .as_deref()
                .map(|id| format!(" (subscription {})", printable(id)))
                .unwrap_or_default();
            let at = document
                .first_difference
                .map(|at| {
                    format!(
                        " at byte {} (line {}, column {})",
                        at.offset, at.line, at.column
                    )
                })
                .unwrap_or_default();
            lines.push(format!(
                "  {}{owner}: {result}{at}",
                printable(&document.name)
            ));
        }
    }
    if report.verified {
        lines.push(verdict(report));
    }
    lines
}

/// The report's verdict in words.
fn verdict(report: &VerifyReport) -> String {
    let total = report.windows.len();
    let matched = report
        .windows
        .iter()
        .filter(|w| w.result == WindowResult::Match)
        .count();
    if total == 0 {
        return "not verified: no exported window starts in the range".into();
    }
    if report.verified {
        return format!("verified: {total} of {total} windows match");
    }
    format!("not verified: {matched} of {total} windows match")
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::exports::verify::{
        DocumentCheck, FirstDifference, UsageCheck, WindowBounds, WindowCheck,
    };

    fn window(result: WindowResult, reason: Option<&str>) -> WindowCheck {
        WindowCheck {
            run_id: 7,
            revision: 1,
            window: WindowBounds {
                start: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                end: Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap(),
            },
            result,
            reason: reason.map(str::to_owned),
            usage: None,
            documents: vec![],
        }
    }

    fn report(windows: Vec<WindowCheck>, verified: bool) -> VerifyReport {
        VerifyReport {
            adapter: "chargeback".into(),
            from: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            to: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            verified,
            windows,
        }
    }

    #[test]
    fn a_verified_report_prints_a_line_per_window_and_the_verdict() {
        let lines = report_lines(&report(vec![window(WindowResult::Match, None)], true));
        assert_eq!(
            lines,
            [
                "window 2026-11-01T00:00:00+00:00 .. 2026-11-02T00:00:00+00:00 (run 7, revision 1): match",
                "verified: 1 of 1 windows match",
            ]
        );
    }

    #[test]
    fn each_differing_document_is_printed_with_where_it_first_differs() {
        let mut mismatch = window(
            WindowResult::Mismatch,
            Some("the usage it read has changed; documents differ: \"a.csv\""),
        );
        mismatch.usage = Some(UsageCheck {
            recorded: "aa".into(),
            now: "bb".into(),
            matches: false,
        });
        let document = |name: &str, owner: Option<&str>, result, at| DocumentCheck {
            name: name.into(),
            subscription_id: owner.map(str::to_owned),
            result,
            first_difference: at,
        };
        mismatch.documents = vec![
            document(
                "a.csv",
                None,
                DocumentResult::Differs,
                Some(FirstDifference {
                    offset: 12,
                    line: 2,
                    column: 5,
                }),
            ),
            document("b.csv", None, DocumentResult::Match, None),
            document("s.html", Some("sub-a"), DocumentResult::Missing, None),
        ];
        let unverifiable = window(WindowResult::Unverifiable, Some("no provenance\u{1b}[2J"));
        let report = report(vec![mismatch, unverifiable], false);
        let lines = report_lines(&report);
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0]
                .ends_with(r#"mismatch: the usage it read has changed; documents differ: "a.csv""#)
        );
        assert_eq!(lines[1], "  usage: recorded aa, now bb");
        assert_eq!(lines[2], "  a.csv: differs at byte 12 (line 2, column 5)");
        assert_eq!(
            lines[3],
            "  s.html (subscription sub-a): missing (published, not written again)"
        );
        assert!(lines[4].ends_with(r"unverifiable: no provenance\u{1b}[2J"));
        assert_eq!(verdict(&report), "not verified: 0 of 2 windows match");
        assert_eq!(
            verdict(&super::tests::report(vec![], false)),
            "not verified: no exported window starts in the range"
        );
    }
}
