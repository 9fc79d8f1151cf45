//! One way to run SQL on either database, so that what the store decides is
//! written once ([`super::exports::ops`], [`super::paging`]) and each backend
//! only runs statements.
//!
//! Statements take `$n` parameters, which both databases read (SQLite's
//! executor binds them by name), and exchange [`Value`]s. What the two dialects spell differently
//! is in [`Dialect`], kept to the few things that really differ.

use std::future::Future;

use anyhow::{Context, anyhow};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Int(value.into())
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Real(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Value::Blob(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// A Rust value a column converts to.
pub(crate) trait FromValue: Sized {
    /// Converts `value`; an error when its type does not fit.
    fn from_value(value: Value) -> anyhow::Result<Self>;
}

impl FromValue for i64 {
    fn from_value(value: Value) -> anyhow::Result<Self> {
        match value {
            Value::Int(int) => Ok(int),
            other => Err(anyhow!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for u32 {
    fn from_value(value: Value) -> anyhow::Result<Self> {
        let int = i64::from_value(value)?;
        u32::try_from(int).with_context(|| format!("{int} is out of range"))
    }
}

impl FromValue for f64 {
    fn from_value(value: Value) -> anyhow::Result<Self> {
        match value {
            Value::Real(real) => Ok(real),
            // SQLite sums a column of whole numbers to an integer.
            Value::Int(int) => Ok(int as f64),
            other => Err(anyhow!("expected a number, found {other:?}")),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: Value) -> anyhow::Result<Self> {
        match value {
            Value::Bool(flag) => Ok(flag),
            // SQLite keeps booleans as 0 and 1.
            Value::Int(int) => Ok(int != 0),
            other => Err(anyhow!("expected a boolean, found {other:?}")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value) -> anyhow::Result<Self> {
        match value {
            Value::Text(text) => Ok(text),
            other => Err(anyhow!("expected text, found {other:?}")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: Value) -> anyhow::Result<Self> {
        match value {
            Value::Blob(bytes) => Ok(bytes),
            other => Err(anyhow!("expected bytes, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value) -> anyhow::Result<Self> {
        match value {
            Value::Null => Ok(None),
            value => T::from_value(value).map(Some),
        }
    }
}

/// A result row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// A row of these column values, in order.
    pub(crate) fn new(values: Vec<Value>) -> Self {
        Row(values)
    }

    /// The values, for a row buffer to be reused.
    pub(crate) fn into_values(self) -> Vec<Value> {
        self.0
    }

    /// Moves column `index` out as a `T` (reading it again gives NULL), so
    /// that text and bytes are not copied.
    pub(crate) fn take<T: FromValue>(&mut self, index: usize) -> anyhow::Result<T> {
        let value = self
            .0
            .get_mut(index)
            .ok_or_else(|| anyhow!("the row has no column {index}"))?;
        T::from_value(std::mem::replace(value, Value::Null))
            .with_context(|| format!("column {index}"))
    }
}

/// What the two databases spell differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The database's clock in milliseconds since the epoch (an integer):
    /// leases run on it, so that replicas' clocks need not agree.
    pub(crate) fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            Dialect::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
        }
    }

    /// `expr` as names are compared: ignoring ASCII case. SQLite's name
    /// columns compare so themselves (`COLLATE NOCASE`); PostgreSQL's go
    /// through the schema's `fold`, which its unique indexes are on.
    pub(crate) fn fold(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => expr.to_owned(),
            Dialect::Postgres => format!("fold({expr})"),
        }
    }

    /// `expr` (text) ordered by its bytes, whatever the database's locale:
    /// SQLite's default, PostgreSQL's `"C"` collation.
    pub(crate) fn bytewise(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => expr.to_owned(),
            Dialect::Postgres => format!("{expr} COLLATE \"C\""),
        }
    }

    /// What a SELECT ends with to lock the rows it reads until the
    /// transaction ends; nothing on SQLite, whose write transactions hold the
    /// whole database.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// Runs statements on one connection or transaction of either database.
///
/// The futures are `Send` so that logic written over a `Sql` runs in the
/// API's tasks on PostgreSQL; SQLite's are ready at once, since rusqlite
/// works synchronously on its own thread.
pub(crate) trait Sql {
    /// How this database spells what differs.
    fn dialect(&self) -> Dialect;

    /// Runs a statement; the number of rows it changed.
    fn execute(
        &self,
        sql: &str,
        params: &[Value],
    ) -> impl Future<Output = anyhow::Result<u64>> + Send;

    /// Runs a statement; every row it returns.
    fn query(
        &self,
        sql: &str,
        params: &[Value],
    ) -> impl Future<Output = anyhow::Result<Vec<Row>>> + Send;

    /// Runs a statement and hands each row it returns to `each`, stopping
    /// at the first error: the way to read many rows without a `Vec` for
    /// each (SQLite reuses one row buffer).
    fn for_each_row(
        &self,
        sql: &str,
        params: &[Value],
        each: impl FnMut(&mut Row) -> anyhow::Result<()> + Send,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Waits until no other transaction is changing which export runs are
    /// queued or running, and keeps them waiting until this one ends.
    fn lock_runs(&self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Runs `work`, which blocks (file I/O), in the middle of a transaction:
    /// at once on SQLite's own thread, on the blocking pool on PostgreSQL,
    /// so that an async worker is never held up.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = anyhow::Result<T>> + Send;

    /// The first row a statement returns, if any.
    fn query_opt(
        &self,
        sql: &str,
        params: &[Value],
    ) -> impl Future<Output = anyhow::Result<Option<Row>>> + Send {
        let rows = self.query(sql, params);
        async move { Ok(rows.await?.into_iter().next()) }
    }

    /// The first row a statement returns; an error when there is none.
    fn query_one(
        &self,
        sql: &str,
        params: &[Value],
    ) -> impl Future<Output = anyhow::Result<Row>> + Send {
        let row = self.query_opt(sql, params);
        async move { row.await?.context("the statement returned no row") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_convert_to_the_types_asked_for() {
        let mut row = Row::new(vec![
            Value::Int(7),
            Value::Null,
            Value::Int(1),
            Value::Text("a".into()),
            Value::Int(3),
        ]);
        assert_eq!(row.take::<i64>(0).unwrap(), 7);
        assert_eq!(row.take::<Option<String>>(1).unwrap(), None);
        assert!(row.take::<bool>(2).unwrap());
        assert_eq!(row.take::<String>(3).unwrap(), "a");
        assert_eq!(row.take::<f64>(4).unwrap(), 3.0);
        assert!(row.take::<String>(0).is_err(), "taken columns read NULL");
        assert!(row.take::<i64>(5).is_err());
    }

    #[test]
    fn out_of_range_counts_are_errors() {
        assert!(Row::new(vec![Value::Int(-1)]).take::<u32>(0).is_err());
        assert!(Row::new(vec![Value::Int(1 << 40)]).take::<u32>(0).is_err());
        assert!(
            Row::new(vec![Value::Text("1".into())])
                .take::<i64>(0)
                .is_err()
        );
    }
}
