//! Assets and the metric-name dictionary: creating, updating, finding and listing assets,
//! and resolving names to ids in bulk for the ingest path (unknown assets and metrics are
//! created on first sight).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Error, Result, Store};

/// Name-to-id maps of the assets and metrics this process has seen, and the labels it has
/// merged into assets. Ids never change once assigned (Vigil never renames or deletes assets
/// or metrics), so entries never go stale.
#[derive(Debug, Default)]
pub struct IdCache {
    assets: RwLock<HashMap<String, i64>>,
    metrics: RwLock<HashMap<String, i32>>,
    labels: Mutex<HashMap<String, std::collections::BTreeMap<String, String>>>,
    /// Metric-family metadata this process has recorded.
    families: Mutex<HashMap<String, crate::vocab::FamilyMeta>>,
    /// (asset, metric) pairs known to be in the `series` table.
    pub(super) series: RwLock<std::collections::HashSet<(i64, i32)>>,
}

/// Class given to assets created on first sight.
pub const DEFAULT_CLASS: &str = "default";

/// One series of an asset.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct SeriesInfo {
    /// The series key, `family{label="value",...}`: the `metric` of reads and writes.
    pub key: String,
    /// The metric name without labels.
    pub family: String,
    /// The labels that tell the series apart.
    pub labels: Value,
    /// The family's type from remote-write metadata (`counter`, `gauge`, ...), if known.
    pub kind: Option<String>,
    /// The first sample's time.
    pub first_ts: DateTime<Utc>,
}

/// A stored asset.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Asset {
    /// Internal id, used by samples.
    pub asset_id: i64,
    /// The identifier users give the asset.
    pub name: String,
    /// Asset class (assets of a class share metrics and models).
    pub class: String,
    /// Free-form labels, a JSON object.
    pub labels: Value,
    /// When it was first seen.
    pub created_at: DateTime<Utc>,
    /// When its class or labels last changed.
    pub updated_at: DateTime<Utc>,
}

/// An asset to create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAsset {
    /// The identifier.
    pub name: String,
    /// Asset class.
    pub class: String,
    /// Labels, a JSON object.
    pub labels: Value,
}

/// Which assets to list, in name order.
#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    /// Only this class.
    pub class: Option<String>,
    /// Only names after this one (keyset pagination).
    pub after: Option<String>,
    /// At most this many.
    pub limit: i64,
}

const ASSET_COLUMNS: &str = "asset_id, name, class, labels, created_at, updated_at";

impl Store {
    /// Creates an asset; [`Error::Duplicate`] if the name is taken.
    pub async fn create_asset(&self, asset: &NewAsset) -> Result<Asset> {
        let row = sqlx::query_as::<_, Asset>(
            "insert into asset (name, class, labels) values ($1, $2, $3) \
             returning asset_id, name, class, labels, created_at, updated_at",
        )
        .bind(&asset.name)
        .bind(&asset.class)
        .bind(&asset.labels)
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Creates the asset or replaces its class and labels; the flag is true when created.
    pub async fn upsert_asset(&self, asset: &NewAsset) -> Result<(Asset, bool)> {
        let (created, row): (bool, Asset) = {
            let row = sqlx::query_as::<_, AssetWithFlag>(
                "insert into asset (name, class, labels) values ($1, $2, $3) \
                 on conflict (name) do update set class = excluded.class, labels = excluded.labels \
                 returning asset_id, name, class, labels, created_at, updated_at, (xmax = 0) as created",
            )
            .bind(&asset.name)
            .bind(&asset.class)
            .bind(&asset.labels)
            .fetch_one(&self.pool)
            .await?;
            (row.created, row.asset)
        };
        Ok((row, created))
    }

    /// The asset with this name; [`Error::NotFound`] if none.
    pub async fn asset_by_name(&self, name: &str) -> Result<Asset> {
        let sql = format!("select {ASSET_COLUMNS} from asset where name = $1");
        sqlx::query_as::<_, Asset>(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("asset {name}")))
    }

    /// Assets matching the filter, in name order.
    pub async fn list_assets(&self, filter: &AssetFilter) -> Result<Vec<Asset>> {
        let sql = format!(
            "select {ASSET_COLUMNS} from asset \
             where ($1::text is null or class = $1) and ($2::text is null or name > $2) \
             order by name limit $3"
        );
        let rows = sqlx::query_as::<_, Asset>(sqlx::AssertSqlSafe(sql))
            .bind(&filter.class)
            .bind(&filter.after)
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// Ids of the named assets, creating those not seen before (class `default`).
    pub async fn resolve_asset_ids(&self, names: &[String]) -> Result<HashMap<String, i64>> {
        // Existing names are selected first so that the insert, and the identity sequence,
        // only see names that are really new.
        self.resolve_ids(
            &self.ids.assets,
            "with input as (select distinct unnest($1::text[]) as name), \
             existing as (select a.name, a.asset_id from asset a join input using (name)), \
             created as (insert into asset (name) \
                         select name from input where name not in (select name from existing) \
                         on conflict (name) do nothing returning name, asset_id) \
             select name, asset_id from existing union all select name, asset_id from created",
            names,
            false,
        )
        .await
    }

    /// Ids of the named metrics (canonical series keys), creating those not seen before
    /// with the labels their keys carry.
    pub async fn resolve_metric_ids(&self, names: &[String]) -> Result<HashMap<String, i32>> {
        self.resolve_ids(
            &self.ids.metrics,
            "with input as (select distinct on (name) name, labels \
                            from unnest($1::text[], $2::jsonb[]) as i(name, labels)), \
             existing as (select m.name, m.metric_id from metric m join input using (name)), \
             created as (insert into metric (name, labels) \
                         select name, labels from input \
                         where name not in (select name from existing) \
                         on conflict (name) do nothing returning name, metric_id) \
             select name, metric_id from existing union all select name, metric_id from created",
            names,
            true,
        )
        .await
    }

    /// Adds labels to assets, keeping the values they already have; writes only assets whose
    /// labels change. `labels` maps asset names to their new labels.
    pub async fn merge_asset_labels(
        &self,
        labels: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    ) -> Result<u64> {
        // Senders repeat the same labels with every request: skip what this process merged.
        let mut names = Vec::new();
        let mut values = Vec::new();
        {
            let merged = self.ids.labels.lock().unwrap_or_else(|e| e.into_inner());
            for (name, asset_labels) in labels {
                if merged.get(name) != Some(asset_labels) {
                    names.push(name.as_str());
                    values.push(serde_json::to_value(asset_labels).unwrap_or_default());
                }
            }
        }
        if names.is_empty() {
            return Ok(0);
        }
        let updated = sqlx::query(
            "update asset a set labels = v.labels || a.labels \
             from unnest($1::text[], $2::jsonb[]) v(name, labels) \
             where a.name = v.name and v.labels || a.labels <> a.labels",
        )
        .bind(&names)
        .bind(&values)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let mut merged = self.ids.labels.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            merged.insert(name.to_owned(), labels[name].clone());
        }
        Ok(updated)
    }

    /// Records remote-write metadata (type, help, unit) of metric families; writes only
    /// families whose metadata this process has not recorded as it is.
    pub async fn record_metric_families(
        &self,
        families: &std::collections::BTreeMap<String, crate::vocab::FamilyMeta>,
    ) -> Result<u64> {
        let (mut names, mut types, mut helps, mut units) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        {
            let known = self.ids.families.lock().unwrap_or_else(|e| e.into_inner());
            for (name, meta) in families {
                if known.get(name) != Some(meta) {
                    names.push(name.as_str());
                    types.push(meta.kind);
                    helps.push(meta.help.as_deref());
                    units.push(meta.unit.as_deref());
                }
            }
        }
        if names.is_empty() {
            return Ok(0);
        }
        let written = sqlx::query(
            "insert into metric_family (name, type, help, unit) \
             select * from unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
             on conflict (name) do update set type = excluded.type, help = excluded.help, \
             unit = excluded.unit, updated_at = now() \
             where (metric_family.type, metric_family.help, metric_family.unit) \
             is distinct from (excluded.type, excluded.help, excluded.unit)",
        )
        .bind(&names)
        .bind(&types)
        .bind(&helps)
        .bind(&units)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let mut known = self.ids.families.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            known.insert(name.to_owned(), families[name].clone());
        }
        Ok(written)
    }

    /// An asset's series (from table `series`), by key.
    pub async fn list_series(&self, asset_id: i64) -> Result<Vec<SeriesInfo>> {
        Ok(sqlx::query_as(
            "select m.name as key, m.family, m.labels, f.type as kind, s.first_ts \
             from series s join metric m using (metric_id) \
             left join metric_family f on f.name = m.family \
             where s.asset_id = $1 order by m.name",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The metric families remote-write metadata calls counters, by name.
    pub async fn counter_families(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "select name from metric_family where type = 'counter' order by name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Runs a create-or-select statement until every name has an id. A name inserted by a
    /// concurrent transaction that commits after this statement's snapshot is neither
    /// inserted nor seen; the next round sees it. Names found in `cache` are not looked up.
    async fn resolve_ids<T>(
        &self,
        cache: &RwLock<HashMap<String, T>>,
        sql: &'static str,
        names: &[String],
        with_labels: bool,
    ) -> Result<HashMap<String, T>>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>
            + Copy
            + Send
            + Unpin,
    {
        let mut wanted: Vec<String> = names.to_vec();
        wanted.sort();
        wanted.dedup();
        let mut ids = HashMap::with_capacity(wanted.len());
        {
            let known = cache.read().unwrap_or_else(|e| e.into_inner());
            for name in &wanted {
                if let Some(&id) = known.get(name) {
                    ids.insert(name.clone(), id);
                }
            }
        }
        for _ in 0..5 {
            let missing: Vec<String> = wanted
                .iter()
                .filter(|n| !ids.contains_key(*n))
                .cloned()
                .collect();
            if missing.is_empty() {
                return Ok(ids);
            }
            let mut query = sqlx::query_as(sql).bind(&missing);
            if with_labels {
                // A series key's labels, as the JSON object stored beside it.
                let labels: Vec<Value> = missing
                    .iter()
                    .map(|name| {
                        let key = crate::vocab::SeriesKey::parse(name).unwrap_or_default();
                        serde_json::to_value(key.labels).unwrap_or_default()
                    })
                    .collect();
                query = query.bind(labels);
            }
            let rows: Vec<(String, T)> = query.fetch_all(&self.pool).await?;
            cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(rows.iter().cloned());
            ids.extend(rows);
        }
        Err(Error::Database(sqlx::Error::Protocol(
            "names could not be resolved after 5 rounds".to_owned(),
        )))
    }
}

#[derive(sqlx::FromRow)]
struct AssetWithFlag {
    #[sqlx(flatten)]
    asset: Asset,
    created: bool,
}
