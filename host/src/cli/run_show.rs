//! `tally export show NAME RUN`: one run of an adapter, with how its
//! documents were made (its provenance) and each document's owner and digest.

use reqwest::Method;
use serde_json::Value;

use super::client::{HostArgs, HostClient};
use super::printable::printable;

/// Arguments of `tally export show`.
#[derive(clap::Args)]
pub struct ShowArgs {
    /// The installation's name.
    name: String,
    /// The run's id (as `tally adapters runs` lists them).
    run: i64,
    #[command(flatten)]
    host: HostArgs,
}

/// Runs `tally export show`.
pub async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let client = HostClient::new(args.host);
    let path = format!("/v1/adapters/{}/runs/{}", args.name, args.run);
    let run: Value = client.json(client.request(Method::GET, &path)?).await?;
    print!("{}", describe(&run));
    Ok(())
}

/// A run as `tally export show` prints it. Every value the host sent goes
/// through [`printable`]: an adapter chose the names and reasons.
fn describe(run: &Value) -> String {
    let text = |value: &Value| printable(value.as_str().unwrap_or("-")).into_owned();
    let mut out = format!(
        "run {} ({}): window {} to {}, revision {}, {} after {} attempt(s)\n",
        run["id"],
        text(&run["runId"]),
        text(&run["windowStart"]),
        text(&run["windowEnd"]),
        run["revision"],
        text(&run["status"]),
        run["attempts"],
    );
    if let Some(reason) = run["reason"].as_str() {
        out += &format!("reason: {}\n", printable(reason));
    }
    let provenance = &run["provenance"];
    if provenance.is_object() {
        out += "provenance:\n";
        for (label, value) in [
            ("contract", text(&provenance["contract"])),
            ("component", text(&provenance["component"])),
            ("config", text(&provenance["config"])),
            ("granularity", text(&provenance["granularity"])),
            (
                "usage",
                format!(
                    "{} ({} rows)",
                    text(&provenance["usage"]),
                    provenance["rowsRead"]
                ),
            ),
        ] {
            out += &format!("  {label:<12} {value}\n");
        }
    } else if run["status"] == "succeeded" {
        out += "provenance: none (exported before provenance was kept)\n";
    }
    let documents = run["documents"].as_array().cloned().unwrap_or_default();
    if !documents.is_empty() {
        out += &format!(
            "{:<40} {:<24} {:>10}  SHA256\n",
            "DOCUMENT", "SUBSCRIPTION", "BYTES"
        );
        for document in &documents {
            let owner = match document["subscriptionId"].as_str() {
                Some(owner) => printable(owner).into_owned(),
                None => "(operator)".to_owned(),
            };
            out += &format!(
                "{:<40} {:<24} {:>10}  {}\n",
                text(&document["name"]),
                owner,
                document["bytes"],
                text(&document["sha256"]),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_prints_its_provenance_and_each_documents_owner() {
        let run = serde_json::json!({
            "id": 7, "runId": "statement-0a1b-20260301T0000Z-r0-00112233",
            "windowStart": "2026-03-01T00:00:00Z", "windowEnd": "2026-04-01T00:00:00Z",
            "revision": 0, "status": "succeeded", "attempts": 1, "reason": null,
            "provenance": {
                "contract": "tally:billing@0.2.0", "component": "c0ffee", "config": "5eed",
                "window": {"start": "2026-03-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"},
                "granularity": "daily", "usage": "abcd", "rowsRead": 42
            },
            "documents": [
                {"name": "all.csv", "subscriptionId": null, "bytes": 10, "sha256": "aa"},
                {"name": "statement-sub-a.html", "subscriptionId": "sub-\u{1b}a", "bytes": 20,
                 "sha256": "bb"}
            ]
        });
        let printed = describe(&run);
        for expected in [
            "run 7 (statement-0a1b-20260301T0000Z-r0-00112233): window 2026-03-01T00:00:00Z",
            "  contract     tally:billing@0.2.0\n",
            "  component    c0ffee\n",
            "  config       5eed\n",
            "  granularity  daily\n",
            "  usage        abcd (42 rows)\n",
            "(operator)",
            "sub-\\u{1b}a",
        ] {
            assert!(printed.contains(expected), "{expected:?} not in\n{printed}");
        }
        assert!(!printed.contains('\u{1b}'));
    }

    #[test]
    fn a_run_without_provenance_says_so() {
        let run = serde_json::json!({
            "id": 1, "runId": "x", "windowStart": "a", "windowEnd": "b", "revision": 0,
            "status": "succeeded", "attempts": 1, "provenance": null, "documents": []
        });
        assert!(describe(&run).contains("provenance: none"));
        let failed = serde_json::json!({
            "id": 1, "status": "failed", "reason": "no rates", "provenance": null
        });
        let printed = describe(&failed);
        assert!(printed.contains("reason: no rates") && !printed.contains("provenance"));
    }
}
