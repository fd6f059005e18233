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

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Refreshes statistics for as long as the store is open (the store aborts
/// it when dropped): at once, then every `every` after which the writer
/// has committed anything (see [`watch`]).
pub(crate) async fn keep_fresh(pool: Pool, commits: Arc<AtomicU64>, every: Duration) {
    watch(&commits, every, || async {
        if pool.is_closed() {
            return false;
        }
        match refresh(&pool).await {
            Ok(tables) if !tables.is_empty() => {
                tracing::debug!(?tables, "analyzed tables with stale statistics");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "refreshing planner statistics failed"),
        }
        true
    })
    .await;
}

/// Calls `look` at once, then every `every` if `commits` moved since the
/// last look, until `look` returns false.
///
/// Why often, and why only after writes: a table growing from empty has no
/// statistics until its first `ANALYZE`, and in that time PostgreSQL plans
/// a claim's update as a hash join over a scan of the whole table, so each
/// claim costs more the more tasks there are (up to 22 ms per claim, where
/// 0.7 ms after the analyze). With a look every second, `cycle` on one
/// PostgreSQL node spent its first second that way and ran 5,400-6,100
/// tasks/s; looking every 100 ms, 6,600-6,900 (performance.md, finding 49).
/// A look is a catalog read of a millisecond or two; an idle node makes
/// none, and a busy one ten a second.
async fn watch<F, Fut>(commits: &AtomicU64, every: Duration, mut look: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut seen = None;
    loop {
        let now = commits.load(Ordering::Relaxed);
        if seen != Some(now) {
            // Read before the look: a commit during it calls for another.
            seen = Some(now);
            if !look().await {
                return;
            }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// The keeper looks once at start, then once per tick in which the
    /// writer committed something, and not at all while it is idle.
    #[tokio::test(start_paused = true)]
    async fn looks_at_start_and_then_only_after_commits() {
        let every = Duration::from_millis(100);
        let commits = Arc::new(AtomicU64::new(0));
        let looks = Arc::new(AtomicUsize::new(0));
        let keeper = tokio::spawn({
            let (commits, looks) = (commits.clone(), looks.clone());
            async move {
                watch(&commits, every, || {
                    looks.fetch_add(1, Ordering::SeqCst);
                    async { true }
                })
                .await;
            }
        });
        let after_ticks = |n: u32| tokio::time::sleep(every * n + every / 2);

        after_ticks(20).await;
        assert_eq!(looks.load(Ordering::SeqCst), 1, "idle: only the first look");

        commits.fetch_add(3, Ordering::SeqCst);
        after_ticks(1).await;
        assert_eq!(looks.load(Ordering::SeqCst), 2, "one look for the commits");
        after_ticks(20).await;
        assert_eq!(looks.load(Ordering::SeqCst), 2, "idle again");

        for n in 3..6 {
            commits.fetch_add(1, Ordering::SeqCst);
            after_ticks(1).await;
            assert_eq!(looks.load(Ordering::SeqCst), n, "a look per busy tick");
        }
        keeper.abort();
    }

    /// A look that finds the pool closed ends the keeper.
    #[tokio::test(start_paused = true)]
    async fn stops_when_a_look_says_so() {
        let commits = AtomicU64::new(0);
        let mut looks = 0;
        watch(&commits, Duration::from_millis(100), || {
            looks += 1;
            commits.fetch_add(1, Ordering::Relaxed);
            let go_on = looks < 3;
            async move { go_on }
        })
        .await;
        assert_eq!(looks, 3);
    }
}
