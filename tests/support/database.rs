//! The backend the integration tests run on: the embedded SQLite database by
//! default, PostgreSQL when `TALLY_TEST_BACKEND=postgres`. On PostgreSQL each
//! data directory gets a fresh database on the server `TALLY_TEST_POSTGRES`
//! names (`tests/run.sh` sets both), dropped with the directory; the `tally`
//! processes a test starts get `--database` for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tally::store::Database;

/// The PostgreSQL server for tests, e.g. `postgres://root@127.0.0.1:5432/test`.
/// Panics when it is not set: a test that needs PostgreSQL fails, never skips.
pub fn postgres_server() -> String {
    std::env::var("TALLY_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "this test needs PostgreSQL: set TALLY_TEST_POSTGRES=postgres://USER@HOST:PORT/DATABASE \
             (tests/run.sh does when one listens on 127.0.0.1:5432)"
        )
    })
}

/// Whether the shared suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("TALLY_TEST_BACKEND").is_ok_and(|backend| backend == "postgres")
}

/// A database of its own on the test server, dropped on drop.
pub struct TestDatabase {
    pub url: String,
    name: String,
    server: String,
}

impl TestDatabase {
    /// Creates an empty database.
    pub fn create() -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let server = postgres_server();
        let name = format!(
            "tally_test_{}_{}_{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros() % 1_000_000
        );
        admin(&server, format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(&server).expect("TALLY_TEST_POSTGRES is a URL");
        url.set_path(&name);
        TestDatabase {
            url: url.to_string(),
            name,
            server,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        admin(
            &self.server,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs one statement on the server, off any async runtime the caller is in.
fn admin(server: &str, sql: String) {
    on_server(server, sql, true);
}

/// Runs one statement on the database at `url`, off any async runtime the
/// caller is in: alone (`bare`, as `CREATE DATABASE` must be), or as a
/// prepared statement whose changed rows are returned.
fn on_server(url: &str, sql: String, bare: bool) -> u64 {
    with_client(url, async move |client| {
        let done = if bare {
            client.batch_execute(&sql).await.map(|()| 0)
        } else {
            client.execute(&sql, &[]).await
        };
        done.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

/// The rows `sql` answers on the PostgreSQL database at `url`, off any
/// async runtime the caller is in.
pub fn query_rows(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let sql = sql.to_owned();
    with_client(url, async move |client| {
        (client.query(&sql, &[]).await).unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

/// Runs `op` with a connection to the database at `url`, on a thread and a
/// runtime of its own, so that callers on the test's runtime can block on it.
fn with_client<T: Send + 'static>(
    url: &str,
    op: impl AsyncFnOnce(&tokio_postgres::Client) -> T + Send + 'static,
) -> T {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
            tokio::spawn(connection);
            op(&client).await
        })
    })
    .join()
    .unwrap()
}

/// Databases of the data directories alive now, for [`database_args`].
static DATABASES: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);

/// A temporary data directory, with its own database when the suite runs on PostgreSQL.
pub struct DataDir {
    dir: tempfile::TempDir,
    database: Option<TestDatabase>,
}

impl DataDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = on_postgres().then(TestDatabase::create);
        if let Some(database) = &database {
            DATABASES
                .lock()
                .unwrap()
                .get_or_insert_default()
                .insert(dir.path().to_path_buf(), database.url.clone());
        }
        DataDir { dir, database }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The store of this directory.
    pub fn database(&self) -> Database {
        match &self.database {
            Some(database) => Database::Postgres(database.url.clone()),
            None => Database::Sqlite(self.path().to_path_buf()),
        }
    }

    /// Runs `sql` on this directory's database behind the host's back (to
    /// damage what it stored); returns the rows changed.
    pub fn execute(&self, sql: &str) -> u64 {
        match &self.database {
            Some(database) => on_server(&database.url, sql.to_owned(), false),
            None => {
                let file = self.path().join(tally::store::sqlite::DATABASE_FILE);
                let connection = rusqlite::Connection::open(file).unwrap();
                connection.busy_timeout(Duration::from_secs(10)).unwrap();
                connection.execute(sql, []).unwrap() as u64
            }
        }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Some(map) = DATABASES.lock().unwrap().as_mut() {
            map.remove(self.dir.path());
        }
    }
}

/// `--database URL` for a command given `--data-dir DIR`, when DIR has a database.
pub fn database_args(data_dir: &Path) -> Vec<String> {
    let databases = DATABASES.lock().unwrap();
    match databases.as_ref().and_then(|map| map.get(data_dir)) {
        Some(url) => vec!["--database".into(), url.clone()],
        None => vec![],
    }
}
