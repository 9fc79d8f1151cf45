//! [`Sql`] on a rusqlite connection: statements run at once, on the calling
//! thread (the writer thread, or a pooled reader), and their futures are
//! ready when returned; [`finish_now`] drives logic written over [`Sql`]
//! there without an async runtime.

use std::future::{Future, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use anyhow::{Context as _, bail};
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement};

use crate::store::sql::{Dialect, Row, Sql, Value};

/// A connection (or a transaction, which derefs to one) that runs [`Sql`].
/// Statements are prepared once per connection and cached.
pub(in crate::store) struct SqliteSql<'c>(pub &'c Connection);

impl SqliteSql<'_> {
    fn run_execute(&self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let mut statement = self.0.prepare_cached(sql)?;
        bind(&mut statement, params)?;
        Ok(statement.raw_execute()? as u64)
    }

    fn run_query(&self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
        let mut statement = self.0.prepare_cached(sql)?;
        bind(&mut statement, params)?;
        let columns = statement.column_count();
        let mut rows = statement.raw_query();
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|index| Ok(value_of(row.get_ref(index)?)))
                .collect::<rusqlite::Result<_>>()?;
            found.push(Row::new(values));
        }
        Ok(found)
    }

    fn run_for_each(
        &self,
        sql: &str,
        params: &[Value],
        mut each: impl FnMut(&mut Row) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut statement = self.0.prepare_cached(sql)?;
        bind(&mut statement, params)?;
        let columns = statement.column_count();
        let mut rows = statement.raw_query();
        let mut values = Vec::with_capacity(columns);
        while let Some(found) = rows.next()? {
            values.clear();
            for index in 0..columns {
                values.push(value_of(found.get_ref(index)?));
            }
            let mut row = Row::new(values);
            each(&mut row)?;
            values = row.into_values();
        }
        Ok(())
    }
}

impl Sql for SqliteSql<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(
        &self,
        sql: &str,
        params: &[Value],
    ) -> impl Future<Output = anyhow::Result<u64>> + Send {
        ready(self.run_execute(sql, params))
    }

    fn query(
        &self,
        sql: &str,
        params: &[Value],
    ) -> impl Future<Output = anyhow::Result<Vec<Row>>> + Send {
        ready(self.run_query(sql, params))
    }

    fn for_each_row(
        &self,
        sql: &str,
        params: &[Value],
        each: impl FnMut(&mut Row) -> anyhow::Result<()> + Send,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        ready(self.run_for_each(sql, params, each))
    }

    /// Nothing to do: every write runs on the one writer thread, in a
    /// transaction begun with `BEGIN IMMEDIATE`.
    fn lock_runs(&self) -> impl Future<Output = anyhow::Result<()>> + Send {
        ready(Ok(()))
    }

    /// Runs at once: this thread is SQLite's own, never an async worker.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = anyhow::Result<T>> + Send {
        ready(Ok(work()))
    }
}

/// Binds `$n` to `params[n - 1]`. SQLite numbers `$n` parameters in the
/// order they first appear, not by `n`, so they are bound by name.
fn bind(statement: &mut Statement<'_>, params: &[Value]) -> anyhow::Result<()> {
    let count = statement.parameter_count();
    if count != params.len() {
        bail!(
            "the statement takes {count} parameters, not {}",
            params.len()
        );
    }
    for index in 1..=count {
        let number = (statement.parameter_name(index))
            .and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok())
            .filter(|number| (1..=count).contains(number))
            .with_context(|| format!("parameter {index} is not one of $1 to ${count}"))?;
        statement.raw_bind_parameter(index, &params[number - 1])?;
    }
    Ok(())
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(int) => ValueRef::Integer(*int),
            Value::Real(real) => ValueRef::Real(*real),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(bytes) => ValueRef::Blob(bytes),
            Value::Bool(flag) => ValueRef::Integer((*flag).into()),
        }))
    }
}

fn value_of(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(int) => Value::Int(int),
        ValueRef::Real(real) => Value::Real(real),
        ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
    }
}

/// The output of `future`, which must be ready on its first poll, as the
/// futures of [`SqliteSql`] are; an error if it waits for anything.
pub(in crate::store) fn finish_now<F: Future>(future: F) -> anyhow::Result<F::Output> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => bail!("SQLite work waited for something: it never should"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_sqlite() {
        let conn = Connection::open_in_memory().unwrap();
        let db = SqliteSql(&conn);
        let params = [
            Value::Null,
            Value::Int(-3),
            Value::Real(0.5),
            Value::Text("é".into()),
            Value::Blob(vec![0, 255]),
        ];
        let rows = finish_now(db.query("SELECT $1, $2, $3, $4, $5", &params))
            .unwrap()
            .unwrap();
        assert_eq!(rows, vec![Row::new(params.to_vec())]);
        let flag = finish_now(db.query_one("SELECT $1", &[Value::Bool(true)]))
            .unwrap()
            .unwrap()
            .take::<i64>(0)
            .unwrap();
        assert_eq!(flag, 1);
    }

    #[test]
    fn parameters_bind_by_their_number_in_any_order() {
        let conn = Connection::open_in_memory().unwrap();
        let db = SqliteSql(&conn);
        let params = ["a", "b", "c"].map(Value::from);
        let mut row = finish_now(db.query_one("SELECT $3, $1, $2, $3", &params))
            .unwrap()
            .unwrap();
        let read: Vec<String> = (0..4).map(|i| row.take(i).unwrap()).collect();
        assert_eq!(read, ["c", "a", "b", "c"]);
        assert!(
            finish_now(db.query("SELECT $1, $2", &params))
                .unwrap()
                .is_err()
        );
        assert!(
            finish_now(db.query("SELECT $1, $4, $2", &params))
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn the_database_clock_is_the_hosts_in_milliseconds() {
        let conn = Connection::open_in_memory().unwrap();
        let db = SqliteSql(&conn);
        let before = chrono::Utc::now().timestamp_millis();
        let sql = format!("SELECT {}", Dialect::Sqlite.now_ms());
        let now: i64 = finish_now(db.query_one(&sql, &[]))
            .unwrap()
            .unwrap()
            .take(0)
            .unwrap();
        let after = chrono::Utc::now().timestamp_millis();
        assert!(
            (before - 1..=after + 1).contains(&now),
            "{before} {now} {after}"
        );
    }

    #[test]
    fn a_future_that_waits_is_an_error() {
        assert!(finish_now(std::future::pending::<()>()).is_err());
        assert_eq!(finish_now(async { 7 }).unwrap(), 7);
    }
}
