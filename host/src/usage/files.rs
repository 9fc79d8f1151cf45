//! Reading usage records from files: NDJSON (the ingest format, one record a
//! line) or CSV (a header row with the same field names; `tags` and
//! `additionalInfo` hold JSON objects; empty cells are absent fields).

use std::io::{BufRead, Read};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use super::record::MAX_QUOTED_LEN;
use super::{RecordError, UsageRecordInput};
use crate::text::truncate;

/// Longest reason given for a record that does not parse, in bytes.
const MAX_REASON_LEN: usize = 2 * MAX_QUOTED_LEN + 64;
/// Longest line read, in bytes: a valid record is a few KiB (its instance
/// data at most 8 KiB), and a line is held whole while it is parsed, so a
/// longer one (a file without line breaks, a small `.gz` that expands to
/// gigabytes) is refused instead of filling memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Columns a CSV file may have.
pub const CSV_COLUMNS: [&str; 11] = [
    "eventId",
    "subscriptionId",
    "meterId",
    "resourceUri",
    "location",
    "tags",
    "additionalInfo",
    "quantity",
    "usageStartTime",
    "usageEndTime",
    "reportedTime",
];

/// A file format of usage records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Ndjson,
    Csv,
}

impl FileFormat {
    /// Guesses the format from a file name: `.csv` is CSV, anything else NDJSON.
    pub fn of_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => FileFormat::Csv,
            _ => FileFormat::Ndjson,
        }
    }
}

/// The format of the file at `path` and a reader of its records: a `.gz`
/// file is decompressed as it is read, its format named by the extension
/// before (`usage.csv.gz`; an archive of pruned events,
/// `usage-events-00000001.ndjson.gz`).
pub fn decoded<'a>(
    path: &std::path::Path,
    input: impl Read + 'a,
) -> (FileFormat, Box<dyn Read + 'a>) {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("gz") => (
            FileFormat::of_path(&path.with_extension("")),
            Box::new(flate2::read::MultiGzDecoder::new(input)),
        ),
        _ => (FileFormat::of_path(path), Box::new(input)),
    }
}

/// One record read from a file: an I/O error stops the read, a record that
/// cannot be parsed is a [`RecordError`] with its index.
pub type ReadRecord = anyhow::Result<Result<UsageRecordInput, RecordError>>;

/// Reads records one by one, so a file of any size streams; a line longer
/// than [`MAX_LINE_BYTES`] stops the read with an error.
pub fn read_records<'a>(
    input: impl Read + 'a,
    format: FileFormat,
) -> anyhow::Result<Box<dyn Iterator<Item = ReadRecord> + 'a>> {
    let input = LineBound {
        inner: input,
        run: 0,
    };
    match format {
        FileFormat::Ndjson => {
            let lines = std::io::BufReader::new(input).lines();
            let records = lines
                .filter(|line| !matches!(line, Ok(l) if l.trim().is_empty()))
                .enumerate()
                .map(|(index, line)| {
                    Ok(parse_json_record(index, &line.context("reading the file")?))
                });
            Ok(Box::new(records))
        }
        FileFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
            let headers = reader.headers().context("reading the CSV header")?.clone();
            if let Some(unknown) = headers.iter().find(|h| !CSV_COLUMNS.contains(h)) {
                bail!(
                    "unknown CSV column '{unknown}'; the columns are {}",
                    CSV_COLUMNS.join(", ")
                );
            }
            let records = reader.into_records().enumerate().map(move |(index, row)| {
                Ok(csv_record(
                    index,
                    &headers,
                    &row.context("reading a CSV row")?,
                ))
            });
            Ok(Box::new(records))
        }
    }
}

/// A reader that fails once a line runs past [`MAX_LINE_BYTES`].
struct LineBound<R> {
    inner: R,
    /// Bytes since the last line break.
    run: usize,
}

impl<R: Read> Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut segments = buf[..read].split(|&byte| byte == b'\n');
        let first = segments.next().map_or(0, <[u8]>::len);
        let (mut longest, mut last) = (self.run + first, self.run + first);
        for segment in segments {
            longest = longest.max(segment.len());
            last = segment.len();
        }
        self.run = last;
        if longest > MAX_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a line runs past {} KiB, longer than any usage record",
                    MAX_LINE_BYTES / 1024
                ),
            ));
        }
        Ok(read)
    }
}

/// Parses one JSON record; a type error names the field.
pub fn parse_json_record(index: usize, json: &str) -> Result<UsageRecordInput, RecordError> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." {
            "record".to_string()
        } else {
            field
        };
        // serde quotes the offending value: cut, so an error stays small.
        let reason = e.into_inner().to_string();
        RecordError::new(index, field, truncate(&reason, MAX_REASON_LEN))
    })
}

fn csv_record(
    index: usize,
    headers: &csv::StringRecord,
    row: &csv::StringRecord,
) -> Result<UsageRecordInput, RecordError> {
    let mut record = UsageRecordInput::default();
    for (column, cell) in headers.iter().zip(row.iter()) {
        if cell.is_empty() {
            continue;
        }
        let text = Some(cell.to_owned());
        match column {
            "eventId" => record.event_id = text,
            "subscriptionId" => record.subscription_id = text,
            "meterId" => record.meter_id = text,
            "resourceUri" => record.resource_uri = text,
            "location" => record.location = text,
            "usageStartTime" => record.usage_start_time = text,
            "usageEndTime" => record.usage_end_time = text,
            "reportedTime" => record.reported_time = text,
            "tags" => record.tags = Some(json_object(index, column, cell)?),
            "additionalInfo" => record.additional_info = Some(json_object(index, column, cell)?),
            "quantity" => {
                let quantity = cell.trim().parse::<f64>().map_err(|_| {
                    RecordError::new(index, column, format!("'{cell}' is not a number"))
                })?;
                record.quantity = Some(quantity);
            }
            _ => unreachable!("columns were checked against CSV_COLUMNS"),
        }
    }
    Ok(record)
}

fn json_object(index: usize, column: &str, cell: &str) -> Result<Map<String, Value>, RecordError> {
    serde_json::from_str(cell)
        .map_err(|e| RecordError::new(index, column, format!("not a JSON object: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_with_json_cells_and_reports_bad_cells() {
        let csv = "eventId,subscriptionId,meterId,quantity,tags,usageStartTime,usageEndTime\n\
                   e1,s1,m1,2.5,\"{\"\"cost-center\"\":\"\"finance\"\"}\",2024-05-01T00:00:00Z,2024-05-01T01:00:00Z\n\
                   e2,s1,m1,lots,,2024-05-01T00:00:00Z,2024-05-01T01:00:00Z\n";
        let records: Vec<_> = read_records(csv.as_bytes(), FileFormat::Csv)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let first = records[0].as_ref().unwrap();
        assert_eq!(first.quantity, Some(2.5));
        assert_eq!(first.tags.as_ref().unwrap()["cost-center"], "finance");
        let second = records[1].as_ref().unwrap_err();
        assert_eq!((second.index, second.field.as_str()), (1, "quantity"));
    }

    /// A line past the bound stops the read, in either format and however
    /// it came (here a gzip file of a few KiB that expands to 64 MiB).
    #[test]
    fn a_line_longer_than_any_record_is_refused() {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(b"{\"eventId\":\"").unwrap();
        for _ in 0..64 {
            gzip.write_all(&[b'x'; 1024 * 1024]).unwrap();
        }
        let bomb = gzip.finish().unwrap();
        assert!(bomb.len() < 100 * 1024, "{} bytes", bomb.len());
        for name in ["bomb.ndjson.gz", "bomb.csv.gz"] {
            let (format, input) = decoded(std::path::Path::new(name), &bomb[..]);
            let error = match read_records(input, format) {
                Err(error) => error,
                Ok(mut records) => records.next().unwrap().unwrap_err(),
            };
            let error = format!("{error:#}");
            assert!(
                error.contains("a line runs past 1024 KiB"),
                "{name}: {error}"
            );
        }
        // A line at the bound, and many lines of any total, are read.
        let line = format!("{{\"eventId\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES - 14));
        assert_eq!(line.len(), MAX_LINE_BYTES);
        let text = format!("{line}\n{line}\n");
        let records: Vec<_> = read_records(text.as_bytes(), FileFormat::Ndjson)
            .unwrap()
            .map(|r| r.unwrap().unwrap())
            .collect();
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn refuses_unknown_csv_columns() {
        assert!(read_records("eventId,colour\n".as_bytes(), FileFormat::Csv).is_err());
    }

    #[test]
    fn reads_ndjson_skipping_blank_lines() {
        let ndjson = "{\"eventId\":\"a\"}\n\n{\"eventId\":\"b\",\"quantity\":\"x\"}\n";
        let records: Vec<_> = read_records(ndjson.as_bytes(), FileFormat::Ndjson)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].as_ref().unwrap_err().field, "quantity");
    }
}
