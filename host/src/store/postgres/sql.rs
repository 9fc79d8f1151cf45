//! [`Sql`] on a pooled PostgreSQL connection or one of its transactions.
//! Statements are prepared once per connection and cached; [`Value`]s bind
//! to whatever integer, text, bytes or boolean type the statement's
//! parameter has, and columns read back by their type.

use std::error::Error;

use anyhow::bail;
use bytes::BytesMut;
use deadpool_postgres::GenericClient;
use futures_util::TryStreamExt;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

use super::RUNS_LOCK;
use crate::store::sql::{Dialect, Row, Sql, Value};

/// A connection or a transaction that runs [`Sql`].
pub(super) struct PgSql<'a, C>(pub &'a C);

impl<C: GenericClient> Sql for PgSql<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.execute(&statement, &bind(params)).await?)
    }

    async fn query(&self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
        let statement = self.0.prepare_cached(sql).await?;
        let rows = self.0.query(&statement, &bind(params)).await?;
        rows.iter().map(row_of).collect()
    }

    /// Streams the rows: one is held at a time, not the whole result twice.
    async fn for_each_row(
        &self,
        sql: &str,
        params: &[Value],
        mut each: impl FnMut(&mut Row) -> anyhow::Result<()> + Send,
    ) -> anyhow::Result<()> {
        let statement = self.0.prepare_cached(sql).await?;
        let rows = self.0.query_raw(&statement, bind(params)).await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await? {
            each(&mut row_of(&row)?)?;
        }
        Ok(())
    }

    /// The advisory lock [`RUNS_LOCK`], held until the transaction ends.
    async fn lock_runs(&self) -> anyhow::Result<()> {
        self.0
            .execute("SELECT pg_advisory_xact_lock($1)", &[&RUNS_LOCK])
            .await?;
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        Ok(tokio::task::spawn_blocking(work).await?)
    }
}

fn bind(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|param| param as _).collect()
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(int) => match *ty {
                Type::INT2 => i16::try_from(*int)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*int)?.to_sql(ty, out),
                _ => int.to_sql(ty, out),
            },
            Value::Real(real) => real.to_sql(ty, out),
            Value::Text(text) => text.as_str().to_sql(ty, out),
            Value::Blob(bytes) => bytes.as_slice().to_sql(ty, out),
            Value::Bool(flag) => flag.to_sql(ty, out),
        }
    }

    /// Any type: [`Self::to_sql_checked`] checks the value against it.
    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let (fits, kind) = match self {
            Value::Null => (true, "NULL"),
            Value::Int(_) => (
                matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8),
                "an integer",
            ),
            Value::Real(_) => (<f64 as ToSql>::accepts(ty), "a number"),
            Value::Text(_) => (<&str as ToSql>::accepts(ty), "text"),
            Value::Blob(_) => (<&[u8] as ToSql>::accepts(ty), "bytes"),
            Value::Bool(_) => (<bool as ToSql>::accepts(ty), "a boolean"),
        };
        if !fits {
            return Err(format!("cannot bind {kind} to a parameter of type {ty}").into());
        }
        self.to_sql(ty, out)
    }
}

/// A row's values, by their column types.
fn row_of(row: &tokio_postgres::Row) -> anyhow::Result<Row> {
    let values = (row.columns().iter().enumerate())
        .map(|(index, column)| {
            let ty = column.type_();
            Ok(match *ty {
                Type::INT8 => row.try_get::<_, Option<i64>>(index)?.into(),
                Type::INT4 => row.try_get::<_, Option<i32>>(index)?.map(i64::from).into(),
                Type::INT2 => row.try_get::<_, Option<i16>>(index)?.map(i64::from).into(),
                Type::FLOAT8 => row.try_get::<_, Option<f64>>(index)?.into(),
                Type::BOOL => row.try_get::<_, Option<bool>>(index)?.into(),
                Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(index)?.into(),
                _ if <String as FromSql>::accepts(ty) => {
                    row.try_get::<_, Option<String>>(index)?.into()
                }
                _ => bail!(
                    "column {} has a type tally does not read: {ty}",
                    column.name()
                ),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Row::new(values))
}
