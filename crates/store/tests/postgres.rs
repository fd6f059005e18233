//! What only the PostgreSQL backend has to show: claims stay an index walk
//! however many finished tasks the table holds, and nodes starting together
//! migrate once.

use aruntime_api::NewTask;
use aruntime_core::{Clock, MockClock};
use aruntime_store::Store;
use aruntime_store::postgres::{PgConfig, PgStore};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_plan_is_an_index_walk_over_a_large_table() {
    let Some(db) = aruntime_testkit::TestDb::create().await else {
        return;
    };
    let store = PgStore::open(&PgConfig::new(&db.url)).await.unwrap();
    let clock = MockClock::default();
    store.bootstrap("h", clock.now()).await.unwrap();
    for i in 0..20 {
        store
            .task_create(
                "default",
                NewTask::titled(format!("ready {i}")),
                None,
                clock.now(),
            )
            .await
            .unwrap();
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO tasks (tenant_id, id, title, goal, acceptance, labels, priority, status, held, \
           parent_id, depends_on, pending_deps, max_attempts, lease_ttl_s, created_at, updated_at) \
         SELECT 'default', 'done-' || g, 'old', '', '[]', '[]', 0, 'done', false, NULL, '[]', 0, 3, 60, g, g \
         FROM generate_series(1, 300000) AS g; \
         ANALYZE tasks;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let plan = store.explain_claim("default", clock.now()).await.unwrap();
    eprintln!("claim plan over 300,020 tasks:\n{plan}");
    assert!(
        plan.contains("Index Scan using tasks_claim on tasks"),
        "{plan}"
    );
    assert!(
        plan.contains("LockRows"),
        "claims lock the rows they take:\n{plan}"
    );
    assert!(!plan.contains("Seq Scan on tasks"), "{plan}");
    assert!(
        !plan.contains("Sort"),
        "the index gives the order; nothing is sorted:\n{plan}"
    );
}

/// Nodes starting together on an empty database apply each migration once
/// (they serialize on an advisory lock) and all come up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let Some(db) = aruntime_testkit::TestDb::create().await else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::open(&PgConfig::new(url)).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4]);
}
