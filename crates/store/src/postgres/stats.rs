//! Keeps PostgreSQL's planner statistics for aruntime's tables current, so
//! that a plan made while a table was small is not kept once it is large.
//!
//! Why aruntime does this and does not leave it all to autovacuum: every
//! write looks tasks up by `(tenant_id, id)`, and `tenant_id` alone also
//! leads the claim index. Without statistics PostgreSQL guesses that one
//! tenant holds 0.5 % of the rows; on a table that was small when a
//! connection cached its generic plan, it then reads the whole tenant
//! through the claim index and filters by id. Measured on this machine
//! (autovacuum off, as on the bench machine): a completion group's lease
//! read took 11.7 ms and read ~10,000 rows for 60, and `cycle` ran at 1,036
//! tasks/s instead of 4,905 with statistics. Autovacuum, where it is on,
//! analyzes a table once a tenth of it has changed, but only every
//! `autovacuum_naptime` (a minute by default), and not at all where it is
//! off. `ANALYZE` also drops the cached plans that read the table, so the
//! next execution plans again with the new figures.
//!
//! Dead rows are left to autovacuum (or an operator's `VACUUM`): reclaiming
//! them is not a question of plans, and [`warn_if_autovacuum_off`] says so
//! at start.

use std::time::Duration;

use sqlx::Connection;

use super::Pool;
use crate::Result;

/// An arbitrary constant naming the lock that lets one node at a time
/// analyze (two `ANALYZE`s of one table would wait for each other).
const LOCK: i64 = 0x6172_756e_7374_6174;

/// The tables of the current schema whose statistics are missing or stale,
/// quoted for SQL: never analyzed though not empty; or the table's file at
/// least doubled (plus 8 pages) since its last analyze, which needs no
/// activity counters (backends report those up to a second late); or
/// autovacuum's own rule (more than 50 rows plus a tenth of the table
/// changed) when no analyze ran in the last minute. A table growing from
/// empty is so analyzed a logarithmic number of times: each `ANALYZE` of
/// a 30,000-row table took ~200 ms of a core under load, and with a rule of
/// 20 % growth there were five in a six-second run.
const STALE: &str = "\
SELECT format('%I', c.relname) \
FROM pg_class c \
JOIN pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
WHERE n.nspname = current_schema() AND c.relkind = 'r' \
  AND ( (c.reltuples < 0 AND pg_relation_size(c.oid) > 0) \
     OR pg_relation_size(c.oid) / current_setting('block_size')::bigint > c.relpages * 2 + 8 \
     OR (COALESCE(s.n_mod_since_analyze, 0) > 50 + 0.1 * GREATEST(c.reltuples, 0) \
         AND COALESCE(GREATEST(s.last_analyze, s.last_autoanalyze), '-infinity') \
             < now() - interval '1 minute') ) \
ORDER BY c.relname";

/// Analyzes the tables whose statistics are missing or stale, unless
/// another node is doing so now; returns the tables it analyzed.
pub(crate) async fn refresh(pool: &Pool) -> Result<Vec<String>> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !ours {
        return Ok(Vec::new());
    }
    let stale: Vec<String> = sqlx::query_scalar(STALE).fetch_all(&mut *tx).await?;
    if !stale.is_empty() {
        let sql = format!("ANALYZE {}", stale.join(", "));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(stale)
}

/// Refreshes statistics every `every` (a look is one catalog read) for as
/// long as the store is open (the store aborts it when dropped).
pub(crate) async fn keep_fresh(pool: Pool, every: Duration) {
    while !pool.is_closed() {
        match refresh(&pool).await {
            Ok(tables) if !tables.is_empty() => {
                tracing::debug!(?tables, "analyzed tables with stale statistics");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "refreshing planner statistics failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Says at start when autovacuum is off: statistics are kept here, but dead
/// rows left by finished tasks then grow the tables until someone runs
/// `VACUUM`.
pub(crate) async fn warn_if_autovacuum_off(pool: &Pool) -> Result<()> {
    let on: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await?;
    if on != "on" {
        tracing::warn!(
            "PostgreSQL's autovacuum is off: aruntime keeps planner statistics itself, \
             but dead rows from task updates are only reclaimed by VACUUM"
        );
    }
    Ok(())
}
