//! The archive's file format: a `transactions` row as archived, its columns (defined once, in
//! [`archived_columns!`]: the row's fields, the SQL that reads them, the Parquet schema, the encoding both ways
//! and the rows' checksum all follow from that one list), and the manifest written beside each file.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{Array, ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The manifest's `format`: bump it when the file's columns change.
///
/// - `/1`: the columns up to `recorded_by`.
/// - `/2`: and `src_balance_after`, `dst_balance_after` (every account's book; `archived_days.has_book`).
pub const FORMAT: &str = "ledger-transactions-archive/2";
/// Rows per Parquet row group and per batch read from PostgreSQL.
pub const BATCH_ROWS: usize = 65_536;

/// How one kind of column is read from PostgreSQL, stored in Parquet, read back, and hashed.
pub trait Column {
    type Value;
    type Builder;
    const NULLABLE: bool;
    fn data_type() -> DataType;
    /// The column's expression in the archive's SELECT.
    fn select(name: &str) -> String {
        name.to_owned()
    }
    fn builder(capacity: usize) -> anyhow::Result<Self::Builder>;
    fn append(builder: &mut Self::Builder, value: &Self::Value);
    fn finish(builder: Self::Builder) -> ArrayRef;
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<Self::Value>;
    /// The value in a row's checksum line.
    fn json(value: &Self::Value) -> Value;
}

fn downcast<T: 'static>(array: &dyn Array) -> anyhow::Result<&T> {
    array.as_any().downcast_ref::<T>().context("an archive column of an unexpected type")
}

/// Text (kinds, directions, statuses).
pub struct Text;
/// Text that may be NULL.
pub struct OptText;
/// An id, stored as its text.
pub struct Id;
/// An id that may be NULL.
pub struct OptId;
/// `TIMESTAMP(µs, UTC)`.
pub struct Time;
/// `DECIMAL(15,2)`.
pub struct Amount;
/// A database transaction id (`xid8`), as a 64-bit integer.
pub struct Xid;
/// A balance that may be NULL (a bank row has no source account), `DECIMAL(20,2)`.
pub struct OptBalance;

impl Column for Text {
    type Value = String;
    type Builder = StringBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> anyhow::Result<StringBuilder> {
        Ok(StringBuilder::with_capacity(capacity, capacity * 16))
    }
    fn append(builder: &mut StringBuilder, value: &String) {
        builder.append_value(value);
    }
    fn finish(mut builder: StringBuilder) -> ArrayRef {
        Arc::new(builder.finish())
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<String> {
        Ok(downcast::<StringArray>(array)?.value(i).to_owned())
    }
    fn json(value: &String) -> Value {
        json!(value)
    }
}

impl Column for OptText {
    type Value = Option<String>;
    type Builder = StringBuilder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> anyhow::Result<StringBuilder> {
        Text::builder(capacity)
    }
    fn append(builder: &mut StringBuilder, value: &Option<String>) {
        builder.append_option(value.as_deref());
    }
    fn finish(builder: StringBuilder) -> ArrayRef {
        Text::finish(builder)
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<Option<String>> {
        (!array.is_null(i)).then(|| Text::read(array, i)).transpose()
    }
    fn json(value: &Option<String>) -> Value {
        json!(value)
    }
}

impl Column for Id {
    type Value = Uuid;
    type Builder = StringBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> anyhow::Result<StringBuilder> {
        Ok(StringBuilder::with_capacity(capacity, capacity * 36))
    }
    fn append(builder: &mut StringBuilder, value: &Uuid) {
        builder.append_value(value.to_string());
    }
    fn finish(builder: StringBuilder) -> ArrayRef {
        Text::finish(builder)
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<Uuid> {
        Ok(downcast::<StringArray>(array)?.value(i).parse()?)
    }
    fn json(value: &Uuid) -> Value {
        json!(value)
    }
}

impl Column for OptId {
    type Value = Option<Uuid>;
    type Builder = StringBuilder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> anyhow::Result<StringBuilder> {
        Id::builder(capacity)
    }
    fn append(builder: &mut StringBuilder, value: &Option<Uuid>) {
        builder.append_option(value.map(|id| id.to_string()));
    }
    fn finish(builder: StringBuilder) -> ArrayRef {
        Text::finish(builder)
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<Option<Uuid>> {
        (!array.is_null(i)).then(|| Id::read(array, i)).transpose()
    }
    fn json(value: &Option<Uuid>) -> Value {
        json!(value)
    }
}

impl Column for Time {
    type Value = DateTime<Utc>;
    type Builder = TimestampMicrosecondBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }
    fn builder(capacity: usize) -> anyhow::Result<Self::Builder> {
        Ok(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
    }
    fn append(builder: &mut Self::Builder, value: &DateTime<Utc>) {
        builder.append_value(value.timestamp_micros());
    }
    fn finish(mut builder: Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<DateTime<Utc>> {
        let micros = downcast::<TimestampMicrosecondArray>(array)?.value(i);
        DateTime::from_timestamp_micros(micros).context("a time out of range")
    }
    fn json(value: &DateTime<Utc>) -> Value {
        json!(value.timestamp_micros())
    }
}

impl Column for Amount {
    type Value = Decimal;
    type Builder = Decimal128Builder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Decimal128(15, 2)
    }
    fn builder(capacity: usize) -> anyhow::Result<Self::Builder> {
        Ok(Decimal128Builder::with_capacity(capacity).with_precision_and_scale(15, 2)?)
    }
    fn append(builder: &mut Self::Builder, value: &Decimal) {
        let mut amount = *value;
        amount.rescale(2);
        builder.append_value(amount.mantissa());
    }
    fn finish(mut builder: Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<Decimal> {
        Ok(Decimal::from_i128_with_scale(downcast::<Decimal128Array>(array)?.value(i), 2))
    }
    fn json(value: &Decimal) -> Value {
        json!(value.to_string())
    }
}

impl Column for OptBalance {
    type Value = Option<Decimal>;
    type Builder = Decimal128Builder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        DataType::Decimal128(20, 2)
    }
    fn builder(capacity: usize) -> anyhow::Result<Self::Builder> {
        Ok(Decimal128Builder::with_capacity(capacity).with_precision_and_scale(20, 2)?)
    }
    fn append(builder: &mut Self::Builder, value: &Option<Decimal>) {
        builder.append_option(value.map(|mut balance| {
            balance.rescale(2);
            balance.mantissa()
        }));
    }
    fn finish(mut builder: Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<Option<Decimal>> {
        let values = downcast::<Decimal128Array>(array)?;
        Ok((!array.is_null(i)).then(|| Decimal::from_i128_with_scale(values.value(i), 2)))
    }
    fn json(value: &Option<Decimal>) -> Value {
        json!(value.map(|mut balance| {
            balance.rescale(2);
            balance.to_string()
        }))
    }
}

impl Column for Xid {
    type Value = i64;
    type Builder = Int64Builder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Int64
    }
    fn select(name: &str) -> String {
        format!("{name}::text::bigint AS {name}")
    }
    fn builder(capacity: usize) -> anyhow::Result<Self::Builder> {
        Ok(Int64Builder::with_capacity(capacity))
    }
    fn append(builder: &mut Self::Builder, value: &i64) {
        builder.append_value(*value);
    }
    fn finish(mut builder: Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
    fn read(array: &dyn Array, i: usize) -> anyhow::Result<i64> {
        Ok(downcast::<Int64Array>(array)?.value(i))
    }
    fn json(value: &i64) -> Value {
        json!(value)
    }
}

/// The archived columns, in the file's order, each with its kind: everything else is generated from this list.
macro_rules! archived_columns {
    ($($name:ident: $kind:ty),+ $(,)?) => {
        /// A `transactions` row as archived: every column.
        #[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
        pub struct ArchivedRow {
            $(pub $name: <$kind as Column>::Value,)+
        }

        /// The columns' names, in the file's order (the manifest lists them).
        pub const COLUMNS: &[&str] = &[$(stringify!($name)),+];

        /// The SELECT list that reads a row of a day's table as an [`ArchivedRow`].
        pub fn select_list() -> String {
            [$(<$kind as Column>::select(stringify!($name))),+].join(", ")
        }

        /// The Parquet schema of an archive file.
        pub fn file_schema() -> SchemaRef {
            Arc::new(Schema::new(vec![
                $(Field::new(stringify!($name), <$kind as Column>::data_type(), <$kind as Column>::NULLABLE)),+
            ]))
        }

        /// One Parquet record batch of `rows`.
        pub fn to_batch(rows: &[ArchivedRow]) -> anyhow::Result<RecordBatch> {
            let columns: Vec<ArrayRef> = vec![$({
                let mut builder = <$kind as Column>::builder(rows.len())?;
                for row in rows {
                    <$kind as Column>::append(&mut builder, &row.$name);
                }
                <$kind as Column>::finish(builder)
            }),+];
            Ok(RecordBatch::try_new(file_schema(), columns)?)
        }

        fn read_batch(batch: &RecordBatch, each: &mut impl FnMut(ArchivedRow)) -> anyhow::Result<()> {
            let column = |name: &str| {
                batch.column_by_name(name).with_context(|| format!("the archive has no column {name}"))
            };
            $(let $name = column(stringify!($name))?;)+
            for i in 0..batch.num_rows() {
                each(ArchivedRow { $($name: <$kind as Column>::read($name.as_ref(), i)?,)+ });
            }
            Ok(())
        }

        /// A row's line in the rows' checksum: a JSON array of its columns.
        fn checksum_line(row: &ArchivedRow) -> Value {
            json!([$(<$kind as Column>::json(&row.$name)),+])
        }
    };
}

archived_columns! {
    id: Id,
    created_at: Time,
    kind: Text,
    src_account_id: OptId,
    dst_account_id: Id,
    amount: Amount,
    direction: Text,
    status: Text,
    reason: OptText,
    description: OptText,
    idempotency_key: OptText,
    created_xid: Xid,
    recorded_by: OptText,
    src_balance_after: OptBalance,
    dst_balance_after: OptBalance,
}

/// Decodes a Parquet file written from [`to_batch`] back into rows, calling `each` for every row in order.
pub fn read_rows(file: Bytes, mut each: impl FnMut(ArchivedRow)) -> anyhow::Result<()> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(BATCH_ROWS).build()?;
    for batch in reader {
        read_batch(&batch?, &mut each)?;
    }
    Ok(())
}

/// What a day's file holds, as the manifest and `archived_days` record it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub format: &'static str,
    pub day: NaiveDate,
    pub object: String,
    pub rows: i64,
    /// SHA-256 of the rows in `(created_at, id)` order, each a JSON array of its columns (in the file's column
    /// order; times as microseconds since the epoch, amounts as decimal text) followed by a newline.
    pub rows_sha256: String,
    pub file_sha256: String,
    pub file_bytes: i64,
    pub min_created_at: Option<DateTime<Utc>>,
    pub max_created_at: Option<DateTime<Utc>>,
    pub columns: Vec<&'static str>,
}

/// Count, checksum and time range of rows seen in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub rows: i64,
    pub rows_sha256: String,
    pub min: Option<DateTime<Utc>>,
    pub max: Option<DateTime<Utc>>,
}

/// Builds [`Totals`] row by row.
#[derive(Default)]
pub struct Tally {
    rows: i64,
    sha: Sha256,
    min: Option<DateTime<Utc>>,
    max: Option<DateTime<Utc>>,
}

impl Tally {
    pub fn add(&mut self, row: &ArchivedRow) {
        self.sha.update(checksum_line(row).to_string().as_bytes());
        self.sha.update(b"\n");
        self.rows += 1;
        self.min = Some(self.min.map_or(row.created_at, |min| min.min(row.created_at)));
        self.max = Some(self.max.map_or(row.created_at, |max| max.max(row.created_at)));
    }

    pub fn finish(self) -> Totals {
        Totals { rows: self.rows, rows_sha256: hex(&self.sha.finalize()), min: self.min, max: self.max }
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u128) -> ArchivedRow {
        ArchivedRow {
            id: Uuid::from_u128(n),
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
            kind: "transfer".into(),
            src_account_id: n.is_multiple_of(2).then(|| Uuid::from_u128(7)),
            dst_account_id: Uuid::from_u128(8),
            amount: Decimal::new(12_345, 2),
            direction: "debit".into(),
            status: "fail".into(),
            reason: Some("Insufficient funds".into()),
            description: None,
            idempotency_key: Some(format!("k-{n}")),
            created_xid: 42,
            recorded_by: None,
            src_balance_after: n.is_multiple_of(2).then(|| Decimal::new(100_000_000_000_000_000, 2)),
            dst_balance_after: Some(Decimal::new(5, 1)),
        }
    }

    #[test]
    fn rows_survive_a_parquet_file_column_for_column() -> anyhow::Result<()> {
        let rows: Vec<ArchivedRow> = (0..5).map(row).collect();
        let mut file = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut file, file_schema(), None)?;
        writer.write(&to_batch(&rows)?)?;
        writer.close()?;
        let mut back = Vec::new();
        read_rows(Bytes::from(file), |row| back.push(row))?;
        assert_eq!(back, rows);
        assert_eq!(COLUMNS.len(), 15);
        assert_eq!(file_schema().fields().len(), COLUMNS.len());
        Ok(())
    }

    #[test]
    fn the_checksum_line_is_the_manifests_documented_form() {
        let line = checksum_line(&row(2)).to_string();
        assert_eq!(
            line,
            "[\"00000000-0000-0000-0000-000000000002\",1700000000123456,\"transfer\",\
             \"00000000-0000-0000-0000-000000000007\",\"00000000-0000-0000-0000-000000000008\",\"123.45\",\
             \"debit\",\"fail\",\"Insufficient funds\",null,\"k-2\",42,null,\"1000000000000000.00\",\"0.50\"]"
        );
        assert!(select_list().contains("created_xid::text::bigint AS created_xid"));
    }
}
