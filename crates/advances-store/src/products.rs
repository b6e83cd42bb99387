//! Products: added and retired from the command line, read by the API.

use advances_model::Product;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;

/// A product as stored: its definition, and since when it is retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProduct {
    pub product: Product,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ProductRow {
    name: String,
    payments: i32,
    interval_ms: i64,
    min_amount: Decimal,
    max_amount: Decimal,
    max_failed_extra_payments: i32,
    created_at: DateTime<Utc>,
    retired_at: Option<DateTime<Utc>>,
}

impl From<ProductRow> for StoredProduct {
    fn from(row: ProductRow) -> Self {
        // The table's CHECKs keep these within the model's bounds, far inside u32 and u64.
        let product = Product {
            name: row.name,
            payments: row.payments.unsigned_abs(),
            interval_ms: row.interval_ms.unsigned_abs(),
            min_amount: row.min_amount,
            max_amount: row.max_amount,
            max_failed_extra_payments: row.max_failed_extra_payments.unsigned_abs(),
        };
        Self { product, created_at: row.created_at, retired_at: row.retired_at }
    }
}

const COLUMNS: &str =
    "name, payments, interval_ms, min_amount, max_amount, max_failed_extra_payments, created_at, retired_at";

/// What adding a product did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    Created,
    /// A product with this name and the same terms exists (it may be retired): nothing was written.
    AlreadyThere(StoredProduct),
    /// A product with this name and other terms exists: names are never reused.
    NameTaken(StoredProduct),
}

/// Adds a product (validated by the caller). Adding the same definition twice is harmless.
pub async fn add(pool: &PgPool, product: &Product) -> sqlx::Result<Added> {
    let inserted = sqlx::query(
        "INSERT INTO products (name, payments, interval_ms, min_amount, max_amount, max_failed_extra_payments)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&product.name)
    .bind(i32::try_from(product.payments).unwrap_or(i32::MAX))
    .bind(i64::try_from(product.interval_ms).unwrap_or(i64::MAX))
    .bind(product.min_amount)
    .bind(product.max_amount)
    .bind(i32::try_from(product.max_failed_extra_payments).unwrap_or(i32::MAX))
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Added::Created);
    }
    let existing = find(pool, &product.name).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok(if existing.product == *product { Added::AlreadyThere(existing) } else { Added::NameTaken(existing) })
}

/// One product, active or retired.
pub async fn find(pool: &PgPool, name: &str) -> sqlx::Result<Option<StoredProduct>> {
    let row: Option<ProductRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM products WHERE name = $1"))
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(StoredProduct::from))
}

/// Every product by name; retired ones only when `retired`.
pub async fn list(pool: &PgPool, retired: bool) -> sqlx::Result<Vec<StoredProduct>> {
    let rows: Vec<ProductRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM products WHERE $1 OR retired_at IS NULL ORDER BY name"))
            .bind(retired)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(StoredProduct::from).collect())
}

/// Retires a product: it takes no new advances; running ones keep their terms. Returns whether it was active.
pub async fn retire(pool: &PgPool, name: &str) -> sqlx::Result<bool> {
    let retired =
        sqlx::query("UPDATE products SET retired_at = clock_timestamp() WHERE name = $1 AND retired_at IS NULL")
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected();
    Ok(retired == 1)
}
