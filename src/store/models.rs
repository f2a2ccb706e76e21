//! The model registry: versioned trained artifacts with their params, feature schema,
//! training range, metrics and status. Activation retires the previous active model of the
//! same kind and class in the same transaction and notifies every replica
//! (`NOTIFY vigil_model_activated`), which is what hot swap listens to.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use super::{Error, Result, Store};

/// Channel on which activations are announced; the payload is the model id.
pub const ACTIVATION_CHANNEL: &str = "vigil_model_activated";

impl ModelRecord {
    /// The bytes of this model's artifact file (rows registered before artifacts moved into
    /// the database), checked against its recorded SHA-256: a missing file, no artifact at
    /// all, or altered bytes are [`Error::Artifact`]. [`Store::model_artifact`] reads any.
    pub fn read_artifact(&self) -> Result<Vec<u8>> {
        let path = self.artifact_path.clone().unwrap_or_default();
        let failed = |source| Error::Artifact {
            path: path.clone(),
            source,
        };
        if self.artifact_path.is_none() {
            return Err(failed(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the model has no artifact",
            )));
        }
        let bytes = std::fs::read(&path).map_err(failed)?;
        if let Some(expected) = &self.artifact_sha256
            && hex::encode(sha2::Sha256::digest(&bytes)) != *expected
        {
            return Err(failed(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file does not match its SHA-256",
            )));
        }
        Ok(bytes)
    }
}

/// A subscription to model activations announced by any replica (PostgreSQL `LISTEN` on
/// [`ACTIVATION_CHANNEL`] over a connection of its own).
#[derive(Debug)]
pub struct ActivationListener(sqlx::postgres::PgListener);

impl ActivationListener {
    /// Waits for the next activation and gives the activated model's id (`None` when the
    /// payload is not an id). An error means the connection is gone: subscribe again.
    pub async fn next(&mut self) -> Result<Option<i64>> {
        let notification = self.0.recv().await?;
        Ok(notification.payload().parse().ok())
    }
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ModelRecord {
    pub model_id: i64,
    /// isolation_forest, failure_probability, time_to_failure, diagnosis or bundle.
    pub kind: String,
    /// Asset class it serves; `None` for the fleet-wide model.
    pub asset_class: Option<String>,
    /// Version, counting from 1 per kind and class.
    pub version: i32,
    /// training, candidate, active, retired or failed.
    pub status: String,
    /// Hyperparameters.
    pub params: Value,
    /// Seed that reproduces the fit.
    pub seed: Option<i64>,
    /// Names, order and version of the features it expects.
    pub feature_schema: Value,
    /// Start of the training range.
    pub train_from: Option<DateTime<Utc>>,
    /// End of the training range.
    pub train_to: Option<DateTime<Utc>>,
    /// Validation metrics.
    pub metrics: Value,
    /// Where the artifact is stored.
    pub artifact_path: Option<String>,
    /// SHA-256 of the artifact.
    pub artifact_sha256: Option<String>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// When it was last activated.
    pub activated_at: Option<DateTime<Utc>>,
}

/// A model to register as a candidate; its version is assigned by the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    pub kind: String,
    /// Asset class, or `None` for fleet-wide.
    pub asset_class: Option<String>,
    /// Hyperparameters.
    pub params: Value,
    pub seed: Option<i64>,
    /// Feature schema.
    pub feature_schema: Value,
    /// Training range start.
    pub train_from: Option<DateTime<Utc>>,
    /// Training range end.
    pub train_to: Option<DateTime<Utc>>,
    /// Validation metrics.
    pub metrics: Value,
    /// Artifact location (a file; rows registered before artifacts moved into the
    /// database). `None` for new models.
    pub artifact_path: Option<String>,
    /// Artifact hash.
    pub artifact_sha256: Option<String>,
    /// The artifact, stored with the row in `model_artifact` (compressed).
    pub artifact: Option<Vec<u8>>,
}

pub(super) const MODEL_COLUMNS: &str = "model_id, kind, asset_class, version, status, params, seed, \
     feature_schema, train_from, train_to, metrics, artifact_path, artifact_sha256, created_at, \
     activated_at";

impl Store {
    /// Subscribes to model activations; activations committed after this returns are
    /// announced to the listener.
    pub async fn listen_model_activations(&self) -> Result<ActivationListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(ACTIVATION_CHANNEL).await?;
        Ok(ActivationListener(listener))
    }

    /// The active model of `kind` (any class) with the bytes of its artifact
    /// ([`Store::model_artifact`]); `None` when no model is active.
    pub async fn active_model_artifact(
        &self,
        kind: &str,
    ) -> Result<Option<(ModelRecord, Vec<u8>)>> {
        let record = self.active_model(kind, None).await?;
        self.with_artifact(record).await
    }

    /// `record` with the bytes of its artifact ([`Store::model_artifact`]).
    pub(super) async fn with_artifact(
        &self,
        record: Option<ModelRecord>,
    ) -> Result<Option<(ModelRecord, Vec<u8>)>> {
        let Some(record) = record else {
            return Ok(None);
        };
        let bytes = self.model_artifact(&record).await?;
        Ok(Some((record, bytes)))
    }

    /// Registers a candidate with the next version of its kind and class, and its artifact
    /// in the same transaction: no row is ever visible without its artifact. Two concurrent
    /// registrations cannot take the same version: the loser retries.
    pub async fn register_model(&self, model: &NewModel) -> Result<ModelRecord> {
        let sql = format!(
            "insert into model (kind, asset_class, version, params, seed, feature_schema, \
             train_from, train_to, metrics, artifact_path, artifact_sha256) \
             select $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10 \
             from model where kind = $1 and asset_class is not distinct from $2 \
             returning {MODEL_COLUMNS}"
        );
        let compressed = match &model.artifact {
            Some(bytes) => Some(snap::raw::Encoder::new().compress_vec(bytes).map_err(|e| {
                Error::Artifact {
                    path: "model artifact".to_owned(),
                    source: std::io::Error::other(e),
                }
            })?),
            None => None,
        };
        let mut attempt = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let result = sqlx::query_as::<_, ModelRecord>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(&model.kind)
                .bind(&model.asset_class)
                .bind(&model.params)
                .bind(model.seed)
                .bind(&model.feature_schema)
                .bind(model.train_from)
                .bind(model.train_to)
                .bind(&model.metrics)
                .bind(&model.artifact_path)
                .bind(&model.artifact_sha256)
                .fetch_one(&mut *tx)
                .await
                .map_err(Error::from);
            let record = match result {
                Err(Error::Duplicate { .. }) if attempt < 5 => {
                    attempt += 1;
                    continue;
                }
                other => other?,
            };
            if let (Some(compressed), Some(raw)) = (&compressed, &model.artifact) {
                sqlx::query(
                    "insert into model_artifact (model_id, encoding, size, bytes) \
                     values ($1, 'snappy', $2, $3)",
                )
                .bind(record.model_id)
                .bind(raw.len() as i64)
                .bind(compressed)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            return Ok(record);
        }
    }

    /// A model's artifact: from `model_artifact` (decompressed), else from the file of a
    /// row registered before artifacts moved into the database; checked against the row's
    /// SHA-256. Missing, undecodable or altered bytes are [`Error::Artifact`].
    pub async fn model_artifact(&self, record: &ModelRecord) -> Result<Vec<u8>> {
        let stored: Option<(String, Vec<u8>)> =
            sqlx::query_as("select encoding, bytes from model_artifact where model_id = $1")
                .bind(record.model_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some((_snappy, compressed)) = stored else {
            return record.read_artifact();
        };
        let place = format!("model {} in the database", record.model_id);
        let failed = |kind, reason: String| Error::Artifact {
            path: place.clone(),
            source: std::io::Error::new(kind, reason),
        };
        let bytes = snap::raw::Decoder::new()
            .decompress_vec(&compressed)
            .map_err(|e| failed(std::io::ErrorKind::InvalidData, e.to_string()))?;
        if let Some(expected) = &record.artifact_sha256
            && hex::encode(sha2::Sha256::digest(&bytes)) != *expected
        {
            return Err(failed(
                std::io::ErrorKind::InvalidData,
                "the artifact does not match its SHA-256".to_owned(),
            ));
        }
        Ok(bytes)
    }

    /// Makes the model the active one of its kind and class, retiring the previous one, and
    /// announces it on [`ACTIVATION_CHANNEL`] when the transaction commits.
    pub async fn activate_model(&self, model_id: i64) -> Result<ModelRecord> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("select status from model where model_id = $1 for update")
                .bind(model_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(status) = status else {
            return Err(Error::NotFound(format!("model {model_id}")));
        };
        if status == "failed" || status == "training" {
            return Err(Error::Constraint {
                constraint: format!("model {model_id} is {status} and cannot be activated"),
            });
        }
        let record = make_active(&mut tx, model_id).await?;
        announce(&mut tx, model_id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The active model of a kind and class, if any.
    pub async fn active_model(
        &self,
        kind: &str,
        asset_class: Option<&str>,
    ) -> Result<Option<ModelRecord>> {
        let sql = format!(
            "select {MODEL_COLUMNS} from model where kind = $1 \
             and asset_class is not distinct from $2 and status = 'active'"
        );
        let record = sqlx::query_as::<_, ModelRecord>(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .bind(asset_class)
            .fetch_optional(&self.pool)
            .await?;
        Ok(record)
    }

    /// All registered models, newest first.
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>> {
        let sql =
            format!("select {MODEL_COLUMNS} from model order by created_at desc, model_id desc");
        let records = sqlx::query_as::<_, ModelRecord>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(records)
    }

    /// The model with this id; [`Error::NotFound`] if none.
    pub async fn model(&self, model_id: i64) -> Result<ModelRecord> {
        let sql = format!("select {MODEL_COLUMNS} from model where model_id = $1");
        sqlx::query_as::<_, ModelRecord>(sqlx::AssertSqlSafe(sql))
            .bind(model_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("model {model_id}")))
    }

    /// The models of `kind` and class that were once active and are retired now, the most
    /// recently activated first: where a rollback may go.
    pub async fn previous_active_models(
        &self,
        kind: &str,
        asset_class: Option<&str>,
    ) -> Result<Vec<ModelRecord>> {
        let sql = format!(
            "select {MODEL_COLUMNS} from model where kind = $1 \
             and asset_class is not distinct from $2 and status = 'retired' \
             and activated_at is not null order by activated_at desc"
        );
        let records = sqlx::query_as::<_, ModelRecord>(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .bind(asset_class)
            .fetch_all(&self.pool)
            .await?;
        Ok(records)
    }
}

/// Makes `model_id` the active model of its kind and class, retiring the one before, in `tx`.
pub(super) async fn make_active(tx: &mut sqlx::PgConnection, model_id: i64) -> Result<ModelRecord> {
    sqlx::query(
        "update model m set status = 'retired' from model t where t.model_id = $1 \
         and m.kind = t.kind and m.asset_class is not distinct from t.asset_class \
         and m.status = 'active' and m.model_id <> $1",
    )
    .bind(model_id)
    .execute(&mut *tx)
    .await?;
    let sql = format!(
        "update model set status = 'active', activated_at = now() where model_id = $1 \
         returning {MODEL_COLUMNS}"
    );
    let record = sqlx::query_as::<_, ModelRecord>(sqlx::AssertSqlSafe(sql))
        .bind(model_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(record)
}

/// Announces a change of the active (or shadow) model to every replica, at `tx`'s commit.
pub(super) async fn announce(tx: &mut sqlx::PgConnection, model_id: i64) -> Result<()> {
    sqlx::query("select pg_notify($1, $2)")
        .bind(ACTIVATION_CHANNEL)
        .bind(model_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}
