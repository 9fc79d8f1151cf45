//! One document over many runs: the succeeded runs of a date range, in
//! window order, each window by its latest revision (a correction replaces
//! what it corrects), streamed run by run. CSV keeps the first header only.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

use super::{Exports, ExportsError};
use crate::store::Store;
use crate::store::exports::{Installation, Run};

/// A document joined over runs, ready to stream.
pub struct JoinedDocument {
    /// The content type of its pieces; `text/plain` when the range has none.
    pub content_type: String,
    /// Its bytes, one run at a time.
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl Exports {
    /// `document` of `installation` over its succeeded runs whose windows
    /// start in `[from, to)`, in window order, each window by its latest
    /// revision. Refused when the installation never published it, or when
    /// its content type does not join.
    pub async fn joined_document(
        &self,
        installation: &Installation,
        document: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<JoinedDocument, ExportsError> {
        let runs = self
            .store
            .published_runs(installation.id, document, from, to)
            .await?;
        let Some(first) = runs.first() else {
            if !self
                .document_names(installation)
                .await?
                .iter()
                .any(|d| d == document)
            {
                return Err(ExportsError::NoDocument {
                    adapter: installation.name.clone(),
                    document: document.to_owned(),
                });
            }
            return Ok(JoinedDocument {
                content_type: "text/plain".into(),
                body: futures_util::stream::empty().boxed(),
            });
        };
        let content_type = self
            .store
            .run_document(first.id, document)
            .await?
            .map(|d| d.content_type)
            .unwrap_or_default();
        let Some(joining) = Joining::of(&content_type) else {
            return Err(ExportsError::NotJoinable {
                per_run: format!(
                    "/v1/adapters/{}/runs/{{id}}/documents/{document}",
                    installation.name
                ),
                document: document.to_owned(),
                content_type,
            });
        };
        let body = concatenate(self.store.clone(), runs, document.to_owned(), joining).boxed();
        Ok(JoinedDocument { content_type, body })
    }
}

/// How the pieces of a document join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joining {
    /// CSV: the header line of every piece but the first is dropped.
    CsvWithHeader,
    /// Line-oriented text (NDJSON, plain text): pieces follow each other.
    Lines,
}

impl Joining {
    /// How documents of `content_type` join, if they can.
    pub fn of(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/csv" => Some(Joining::CsvWithHeader),
            "text/plain" | "application/x-ndjson" | "application/jsonl" => Some(Joining::Lines),
            _ => None,
        }
    }
}

/// The bytes of `document` over `runs`, one run at a time (memory holds one
/// run's document, not the range's).
pub fn concatenate(
    store: Arc<dyn Store>,
    runs: Vec<Run>,
    document: String,
    joining: Joining,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(
        (runs.into_iter().enumerate(), store, document),
        move |(mut runs, store, document)| async move {
            let (index, run) = runs.next()?;
            let piece = match store.run_document(run.id, &document).await {
                Ok(Some(stored)) => Ok(piece(stored.bytes, index, joining)),
                Ok(None) => Ok(Bytes::new()), // removed meanwhile
                Err(error) => Err(std::io::Error::other(error.to_string())),
            };
            Some((piece, (runs, store, document)))
        },
    )
}

/// A run's document as it appears in the joined one.
fn piece(mut bytes: Vec<u8>, index: usize, joining: Joining) -> Bytes {
    if joining == Joining::CsvWithHeader && index > 0 {
        let header_end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..header_end);
    }
    if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
        bytes.push(b'\n');
    }
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_pieces_keep_one_header_and_end_their_lines() {
        let first = piece(b"a,b\n1,2\n".to_vec(), 0, Joining::CsvWithHeader);
        let second = piece(b"a,b\r\n3,4".to_vec(), 1, Joining::CsvWithHeader);
        let empty = piece(b"a,b\n".to_vec(), 2, Joining::CsvWithHeader);
        assert_eq!([first, second, empty].concat(), b"a,b\n1,2\n3,4\n".to_vec());
        assert_eq!(
            piece(b"{}\n".to_vec(), 1, Joining::Lines),
            Bytes::from_static(b"{}\n")
        );
    }

    #[test]
    fn only_line_oriented_documents_join() {
        assert_eq!(
            Joining::of("text/csv; charset=utf-8"),
            Some(Joining::CsvWithHeader)
        );
        assert_eq!(Joining::of("application/x-ndjson"), Some(Joining::Lines));
        assert_eq!(Joining::of("application/json"), None);
    }

    /// A content type joins by its essence, whatever its case, spacing and
    /// parameters; a near miss does not.
    #[test]
    fn content_types_join_by_their_essence() {
        assert_eq!(Joining::of("TEXT/CSV"), Some(Joining::CsvWithHeader));
        assert_eq!(
            Joining::of(" text/plain ;charset=us-ascii"),
            Some(Joining::Lines)
        );
        assert_eq!(Joining::of("application/jsonl"), Some(Joining::Lines));
        for other in [
            "text/csvx",
            "text/csv-schema",
            "",
            ";text/csv",
            "application/x-ndjson+zip",
        ] {
            assert_eq!(Joining::of(other), None, "{other:?}");
        }
    }
}
