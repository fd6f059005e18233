//! The SQLite writer's hot statements, run on the writer's own thread
//! through SQLite's C API instead of through sqlx.
//!
//! Why: sqlx runs each SQLite connection on a worker thread of its own and
//! hands it every statement over a channel; each row comes back as one more
//! message, copied value by value, and each message wakes the writer's
//! runtime. Profiled during `cycle` (performance.md, finding 29), the two
//! threads spent about a third of their time on those hand-offs, copies and
//! wake-ups, not in SQLite. Here the set-based statements of a batch
//! (grouped creates, claims, completions, the events, BEGIN and COMMIT)
//! run in place, their rows decoded straight from the statement.
//!
//! The connection is still sqlx's: every other write keeps using it. The
//! raw handle is taken once, through [`SqliteConnection::lock_handle`], and
//! used only while no sqlx command on that connection is in flight. The
//! writer guarantees that: it owns the connection alone and awaits every
//! sqlx statement to its end before it runs the next statement of either
//! kind, so sqlx's worker thread is idle, parked on its command channel,
//! whenever this module touches the handle; the channel's send and receive
//! order every access on one thread before the next on the other.
//!
//! Prepared statements are cached per statement text (the set-based
//! statements take a few padded shapes, see `bulk`) and finalized before
//! the connection closes: SQLite refuses to close a connection with live
//! statements, and sqlx panics when it does.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int};
use std::ptr::{NonNull, null_mut};
use std::sync::Arc;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

use crate::{Result, StoreError};

use super::bulk::Cell;

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A result row: its values in column order, and the statement's column names.
#[derive(Debug, Clone)]
pub(crate) struct FfiRow {
    names: Arc<[String]>,
    vals: Vec<Val>,
    /// Where the next lookup by name starts: the column after the last one
    /// found. Decoders read a row's columns mostly in the order they were
    /// selected, so most lookups match at once; a scan of all ~30 task
    /// columns for each of them was 2 % of the writer's instructions.
    /// The writer's statements name each column once; were a name
    /// repeated, a lookup would find whichever comes first from here.
    next: std::cell::Cell<usize>,
}

impl FfiRow {
    /// The value of column `name`.
    pub(crate) fn val(&self, name: &str) -> Result<&Val> {
        let n = self.names.len();
        let start = self.next.get();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.names[i] == name)
            .and_then(|i| {
                self.next.set(i + 1);
                self.vals.get(i)
            })
            .ok_or_else(|| StoreError::Corrupt(format!("no column {name}")))
    }
}

/// A prepared statement, its column names, and for each of its parameters
/// the index of the argument it takes.
#[derive(Clone)]
struct Prepared {
    stmt: NonNull<ffi::sqlite3_stmt>,
    names: Arc<[String]>,
    params: Arc<[usize]>,
}

/// The writer connection's raw handle and its prepared statements.
pub(crate) struct Handle {
    db: NonNull<ffi::sqlite3>,
    /// Keyed by statement text with a quick hash: SipHash of texts of a
    /// kilobyte or more, on every statement, was 1.3 % of the writer's
    /// instructions, and these keys are the writer's own, not a client's.
    stmts: foldhash::HashMap<String, Prepared>,
}

// SAFETY: the handle is used from one thread at a time (see the module
// docs); SQLite connections may move between threads in its default
// serialized/multi-thread modes, which the bundled build uses.
unsafe impl Send for Handle {}

impl Handle {
    /// Takes the raw handle of `conn`, the writer's connection.
    pub(crate) async fn of(conn: &mut SqliteConnection) -> Result<Self> {
        let mut locked = conn.lock_handle().await?;
        let db = locked.as_raw_handle();
        Ok(Handle {
            db,
            stmts: foldhash::HashMap::default(),
        })
    }

    fn error(&self, what: &str) -> StoreError {
        // SAFETY: `db` is open for as long as `self` lives.
        let (code, msg) = unsafe {
            let code = ffi::sqlite3_extended_errcode(self.db.as_ptr());
            let msg = CStr::from_ptr(ffi::sqlite3_errmsg(self.db.as_ptr()))
                .to_string_lossy()
                .into_owned();
            (code, msg)
        };
        StoreError::Sqlite {
            code,
            message: format!("{what}: {msg}"),
        }
    }

    /// The prepared statement for `sql`, prepared now if it is not cached.
    fn prepare(&mut self, sql: &str) -> Result<Prepared> {
        if let Some(p) = self.stmts.get(sql) {
            return Ok(p.clone());
        }
        let mut stmt = null_mut();
        let len = c_int::try_from(sql.len())
            .map_err(|_| StoreError::Corrupt("statement too long".into()))?;
        // SAFETY: `sql` outlives the call and its length is given;
        // `stmt` receives the prepared statement or NULL.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error("prepare"));
        }
        let stmt =
            NonNull::new(stmt).ok_or_else(|| StoreError::Corrupt("an empty statement".into()))?;
        // SAFETY: `stmt` is a live statement; column names are copied
        // before anything else can change them.
        let names: Arc<[String]> = unsafe {
            let n = ffi::sqlite3_column_count(stmt.as_ptr());
            (0..n)
                .map(|i| {
                    let p = ffi::sqlite3_column_name(stmt.as_ptr(), i);
                    if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p).to_string_lossy().into_owned()
                    }
                })
                .collect()
        };
        // SAFETY: as above. `$n` and `?n` take argument n, as sqlx binds
        // them (a name that repeats is one parameter); `?` takes the
        // argument at its own position.
        let params: Result<Arc<[usize]>> = unsafe {
            let n = ffi::sqlite3_bind_parameter_count(stmt.as_ptr());
            (1..=n)
                .map(|i| {
                    let p = ffi::sqlite3_bind_parameter_name(stmt.as_ptr(), i);
                    if p.is_null() {
                        return Ok(i as usize - 1);
                    }
                    let name = CStr::from_ptr(p).to_string_lossy();
                    name.get(1..)
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n > 0)
                        .map(|n| n - 1)
                        .ok_or_else(|| StoreError::Corrupt(format!("parameter {name}")))
                })
                .collect()
        };
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `stmt` is live and not cached, so finalized once.
                unsafe { ffi::sqlite3_finalize(stmt.as_ptr()) };
                return Err(e);
            }
        };
        let p = Prepared {
            stmt,
            names,
            params,
        };
        self.stmts.insert(sql.to_owned(), p.clone());
        Ok(p)
    }

    /// Runs `sql` with `args` bound in order and returns every row.
    pub(crate) fn fetch(&mut self, sql: &str, args: &[Cell]) -> Result<Vec<FfiRow>> {
        let Prepared {
            stmt,
            names,
            params,
        } = self.prepare(sql)?;
        let stmt = stmt.as_ptr();
        // SAFETY: `stmt` is a live statement of this connection.
        let out = unsafe { run(stmt, &names, &params, args) }.map_err(|what| self.error(what));
        // SAFETY: as above. Reset ends the statement (releasing its read of
        // the database) and clearing drops the bound text.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        out
    }

    /// Finalizes every prepared statement, so the connection can close.
    pub(crate) fn finalize(&mut self) {
        for (_, p) in self.stmts.drain() {
            // SAFETY: each statement is live and finalized once.
            unsafe {
                ffi::sqlite3_finalize(p.stmt.as_ptr());
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.finalize();
    }
}

/// Binds `args` to `s` in order and steps it to the end.
///
/// # Safety
/// `s` must be a live, reset statement.
unsafe fn run(
    s: *mut ffi::sqlite3_stmt,
    names: &Arc<[String]>,
    params: &[usize],
    args: &[Cell],
) -> Result<Vec<FfiRow>, &'static str> {
    for (i, arg) in params.iter().enumerate() {
        let a = args.get(*arg).ok_or("bind: too few arguments")?;
        let i = c_int::try_from(i + 1).map_err(|_| "bind: too many parameters")?;
        // SAFETY: `s` is live. Text is bound in place (SQLITE_STATIC), not
        // copied: `args` is borrowed until `Handle::fetch` returns, and that
        // resets the statement and clears its bindings before it does, so
        // SQLite never reads the text after it is gone. Copying it was a
        // `malloc`, a copy and a `free` per argument, 3 % of the writer.
        let rc = unsafe {
            match a {
                Cell::Text(Some(t)) => ffi::sqlite3_bind_text64(
                    s,
                    i,
                    t.as_ptr().cast(),
                    t.len() as u64,
                    ffi::SQLITE_STATIC(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                Cell::Int(Some(v)) => ffi::sqlite3_bind_int64(s, i, *v),
                Cell::Bool(Some(v)) => ffi::sqlite3_bind_int64(s, i, i64::from(*v)),
                Cell::Text(None) | Cell::Int(None) | Cell::Bool(None) => {
                    ffi::sqlite3_bind_null(s, i)
                }
                // SQLite has no arrays; `bulk::Rows` never makes them here.
                Cell::Texts(_) | Cell::Ints(_) | Cell::Bools(_) => ffi::SQLITE_MISMATCH,
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err("bind");
        }
    }
    let mut rows = vec![];
    loop {
        // SAFETY: `s` is live and bound.
        match unsafe { ffi::sqlite3_step(s) } {
            ffi::SQLITE_ROW => rows.push(FfiRow {
                names: names.clone(),
                // SAFETY: `s` is positioned on a row; `c` is in range.
                vals: (0..names.len()).map(|c| unsafe { column(s, c) }).collect(),
                next: std::cell::Cell::new(0),
            }),
            ffi::SQLITE_DONE => return Ok(rows),
            _ => return Err("step"),
        }
    }
}

/// Column `c` of the row `s` is on, copied out.
///
/// # Safety
/// `s` must be a live statement positioned on a row, and `c` in range.
unsafe fn column(s: *mut ffi::sqlite3_stmt, c: usize) -> Val {
    let c = c as c_int;
    // SAFETY: as the caller promised; the text and blob pointers are read
    // before the next call on `s`, with the length SQLite reports.
    unsafe {
        match ffi::sqlite3_column_type(s, c) {
            ffi::SQLITE_INTEGER => Val::Int(ffi::sqlite3_column_int64(s, c)),
            ffi::SQLITE_FLOAT => Val::Real(ffi::sqlite3_column_double(s, c)),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_column_text(s, c);
                let n = ffi::sqlite3_column_bytes(s, c) as usize;
                if p.is_null() {
                    Val::Text(String::new())
                } else {
                    let bytes = std::slice::from_raw_parts(p, n);
                    // The checked conversion first: it is several times
                    // quicker than the lossy one, which only text this
                    // store did not write could need.
                    match std::str::from_utf8(bytes) {
                        Ok(t) => Val::Text(t.to_owned()),
                        Err(_) => Val::Text(String::from_utf8_lossy(bytes).into_owned()),
                    }
                }
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_column_blob(s, c).cast::<u8>();
                let n = ffi::sqlite3_column_bytes(s, c) as usize;
                if p.is_null() {
                    Val::Blob(vec![])
                } else {
                    Val::Blob(std::slice::from_raw_parts(p, n).to_vec())
                }
            }
            _ => Val::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{ConnectOptions, Connection};

    use super::*;

    async fn open() -> SqliteConnection {
        let opts: sqlx::sqlite::SqliteConnectOptions = "sqlite::memory:".parse().expect("options");
        opts.connect().await.expect("in-memory database")
    }

    /// An in-memory database with table `t` made by `ddl`.
    async fn open_with(ddl: &str) -> SqliteConnection {
        let mut conn = open().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&mut conn)
            .await
            .expect("table");
        conn
    }

    #[tokio::test]
    async fn numbered_parameters_take_their_argument_wherever_they_appear() {
        let mut conn = open().await;
        let mut h = Handle::of(&mut conn).await.expect("handle");
        let rows = h
            .fetch(
                "SELECT $2 AS b, $1 AS a, $2 AS again, NULL AS empty",
                &[Cell::Int(Some(1)), Cell::Text(Some("two".into()))],
            )
            .expect("select");
        let row = &rows[0];
        assert_eq!(row.val("a").expect("a"), &Val::Int(1));
        assert_eq!(row.val("b").expect("b"), &Val::Text("two".into()));
        assert_eq!(row.val("again").expect("again"), &Val::Text("two".into()));
        assert_eq!(row.val("empty").expect("empty"), &Val::Null);
        let rows = h
            .fetch(
                "SELECT ? AS x, ? AS y",
                &[Cell::Bool(Some(true)), Cell::Int(None)],
            )
            .expect("anonymous");
        assert_eq!(rows[0].val("x").expect("x"), &Val::Int(1));
        assert_eq!(rows[0].val("y").expect("y"), &Val::Null);
        drop(h);
        conn.close()
            .await
            .expect("closes with no statement left open");
    }

    #[tokio::test]
    async fn a_refused_statement_says_why_and_leaves_the_connection_usable() {
        let mut conn = open_with("CREATE TABLE t (k INTEGER PRIMARY KEY)").await;
        let mut h = Handle::of(&mut conn).await.expect("handle");
        h.fetch("INSERT INTO t (k) VALUES (?)", &[Cell::Int(Some(1))])
            .expect("first insert");
        let err = h
            .fetch("INSERT INTO t (k) VALUES (?)", &[Cell::Int(Some(1))])
            .expect_err("a duplicate key");
        assert!(
            matches!(&err, StoreError::Sqlite { code, message }
                if code & 0xff == ffi::SQLITE_CONSTRAINT && message.contains("UNIQUE")),
            "{err:?}"
        );
        assert!(!err.is_unavailable());
        let err = h.fetch("SELECT FROM", &[]).expect_err("a syntax error");
        assert!(matches!(err, StoreError::Sqlite { .. }), "{err:?}");
        // The same cached statement runs again, and sqlx sees its writes.
        h.fetch("INSERT INTO t (k) VALUES (?)", &[Cell::Int(Some(2))])
            .expect("another insert");
        drop(h);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(n, 2);
        conn.close().await.expect("close");
    }

    #[tokio::test]
    async fn text_bound_in_place_is_kept_after_its_argument_is_gone() {
        let mut conn = open_with("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)").await;
        let mut h = Handle::of(&mut conn).await.expect("handle");
        for (k, v) in [(1, "first"), (2, "second, longer")] {
            let args = vec![Cell::Int(Some(k)), Cell::Text(Some(v.to_owned()))];
            h.fetch("INSERT INTO t (k, v) VALUES (?, ?)", &args)
                .expect("insert");
            drop(args);
        }
        let rows = h
            .fetch(
                "SELECT k, v, CAST(x'ff41' AS TEXT) AS bad FROM t ORDER BY k",
                &[],
            )
            .expect("select");
        // Looked up out of their order, and twice: the cursor wraps.
        for (row, want) in rows.iter().zip(["first", "second, longer"]) {
            assert_eq!(row.val("v").expect("v"), &Val::Text(want.into()));
            assert!(matches!(row.val("k").expect("k"), Val::Int(_)));
            assert_eq!(row.val("v").expect("v again"), &Val::Text(want.into()));
            assert_eq!(row.val("bad").expect("bad"), &Val::Text("\u{fffd}A".into()));
            assert!(row.val("missing").is_err());
        }
        drop(h);
        conn.close().await.expect("close");
    }
}
