//! Reconciliation's paging, called directly on seeded databases (no Temporal): a retried range resumes from
//! its last heartbeat, every page is checked once, and a payment the ledger agreed with is never looked up
//! again (so its ledger row may go to cold storage).

use advances_activities::reconcile::PAGE_ADVANCES;
use advances_activities::{Activities, ActivityMetrics};
use advances_model::{AlertKind, IdRange, RangeProgress, ReconcileReport};
use advances_store::Store;
use system_tests::seed::{seed_open_advances, WORKER};
use system_tests::{TestDatabase, TestLedger};
use uuid::Uuid;

/// Two and a half pages of open advances, and the worker's activities on them.
struct Seeded {
    ledger: TestLedger,
    database: TestDatabase,
    activities: Activities,
    /// The advances' ids, in the order reconciliation pages through them.
    ids: Vec<Uuid>,
}

impl Seeded {
    async fn new() -> anyhow::Result<Self> {
        let (ledger, database) = tokio::try_join!(TestLedger::start(), TestDatabase::create())?;
        let (_, client) = ledger.client_with(WORKER, &["accounts:read"]).await?;
        let pool = advances_store::connect(&database.url, 4).await?;
        let accounts: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
        sqlx::query("INSERT INTO accounts (id, balance) SELECT unnest($1::uuid[]), 0")
            .bind(&accounts[..])
            .execute(&ledger.pool)
            .await?;
        let count = PAGE_ADVANCES as u64 * 5 / 2;
        seed_open_advances(&pool, &ledger.pool, &accounts, count, 0).await?;
        let ids: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM advances ORDER BY id").fetch_all(&pool).await?;
        let activities = Activities { ledger: client, store: Store::new(pool), metrics: ActivityMetrics::new()? };
        Ok(Self { ledger, database, activities, ids: ids.into_iter().map(|(id,)| id).collect() })
    }

    async fn check(&self, progress: RangeProgress) -> anyhow::Result<ReconcileReport> {
        self.activities.check_range(IdRange { first: Uuid::nil(), last: Uuid::max() }, progress, None).await
    }

    /// Makes one advance's formula fail (a payment amount changed behind the workflow's back).
    async fn tamper(&self, advance_id: Uuid) -> anyhow::Result<()> {
        sqlx::query("UPDATE payments SET amount = amount + 1 WHERE advance_id = $1 AND number = 9")
            .bind(advance_id)
            .execute(self.activities.store.pool())
            .await?;
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.activities.store.pool().close().await;
        self.database.drop_database().await?;
        self.ledger.stop().await
    }
}

#[tokio::test]
async fn a_retried_range_resumes_after_its_last_heartbeat_and_checks_each_page_once() -> anyhow::Result<()> {
    let seeded = Seeded::new().await?;
    let whole = seeded.check(RangeProgress { next: Some(Uuid::nil()), ..Default::default() }).await?;
    assert_eq!(
        (whole.advances_checked, whole.payments_checked),
        (seeded.ids.len() as u64, 6 * seeded.ids.len() as u64)
    );
    assert_eq!(whole.mismatch_count, 0, "{whole:?}");

    // An attempt that heartbeated after its first page, then died: the retry starts at the second page and
    // adds to what the first attempt had counted. A mismatch on the first page is not found again; one after
    // the cursor is.
    let page = PAGE_ADVANCES as usize;
    let (before, after) = (seeded.ids[page / 2], seeded.ids[page + 7]);
    seeded.tamper(before).await?;
    seeded.tamper(after).await?;
    let heartbeaten =
        ReconcileReport { advances_checked: page as u64, payments_checked: 6 * page as u64, ..Default::default() };
    let resumed = seeded.check(RangeProgress { next: Some(seeded.ids[page]), report: heartbeaten }).await?;
    assert_eq!(resumed.advances_checked, seeded.ids.len() as u64, "each advance counted once: {resumed:?}");
    // The whole run before found every paid payment in the ledger and remembered it: none is looked up again.
    assert_eq!(resumed.payments_checked, 6 * page as u64);
    let found: Vec<_> = resumed.mismatches.iter().map(|m| (m.kind, m.advance_id)).collect();
    assert_eq!(found, [(AlertKind::FormulaMismatch, Some(after))], "only the pages after the cursor: {resumed:?}");
    let finished = seeded.check(RangeProgress { next: None, report: resumed.clone() }).await?;
    assert_eq!(finished, resumed, "a range already done checks nothing");

    // The whole range again finds both, and each is one alert however many runs find it.
    let again = seeded.check(RangeProgress { next: Some(Uuid::nil()), ..Default::default() }).await?;
    assert_eq!(again.mismatch_count, 2, "{again:?}");
    assert_eq!(seeded.activities.store.alerts(10).await?.len(), 2);
    seeded.stop().await
}

/// The ledger's rows go to cold storage after HOT_RETENTION_DAYS. Reconciliation checks a settled payment and a
/// grant once and remembers it: with every ledger row gone, a second run raises nothing and looks nothing up. A
/// payment changed after its check is looked up again, and then the missing row is a mismatch.
#[tokio::test]
async fn a_payment_the_ledger_agreed_with_is_not_looked_up_again_after_its_row_went_cold() -> anyhow::Result<()> {
    let seeded = Seeded::new().await?;
    let whole = seeded.check(RangeProgress { next: Some(Uuid::nil()), ..Default::default() }).await?;
    assert_eq!((whole.payments_checked, whole.mismatch_count), (6 * seeded.ids.len() as u64, 0));

    // As if every day had been archived and dropped.
    sqlx::query("TRUNCATE transactions").execute(&seeded.ledger.pool).await?;
    let later = seeded.check(RangeProgress { next: Some(Uuid::nil()), ..Default::default() }).await?;
    assert_eq!((later.payments_checked, later.mismatch_count), (0, 0), "{later:?}");

    // A paid payment's transaction is changed behind the workflow's back: it is checked again.
    let changed = seeded.ids[17];
    sqlx::query("UPDATE payments SET transaction_id = gen_random_uuid() WHERE advance_id = $1 AND number = 2")
        .bind(changed)
        .execute(seeded.activities.store.pool())
        .await?;
    let after = seeded.check(RangeProgress { next: Some(Uuid::nil()), ..Default::default() }).await?;
    assert_eq!(after.payments_checked, 1, "{after:?}");
    let found: Vec<_> = after.mismatches.iter().map(|m| (m.kind, m.advance_id)).collect();
    assert_eq!(found, [(AlertKind::LedgerMismatch, Some(changed))], "{after:?}");
    seeded.stop().await
}
