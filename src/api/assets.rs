//! Assets over HTTP: `GET /v1/assets` (filter by class, keyset pagination),
//! `GET /v1/assets/{name}`, and `PUT /v1/assets/{name}` (scope `ingest`) to declare an asset's
//! class and labels ahead of its metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::input::{ApiJson, ApiPath, ApiQuery, check_name};
use crate::store::assets::{Asset, AssetFilter, DEFAULT_CLASS, NewAsset};

/// Default and largest page size of `GET /v1/assets`.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// Query of `GET /v1/assets`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    class: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

/// A page of assets; `next` is the `after` value of the following page.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AssetPage {
    assets: Vec<Asset>,
    next: Option<String>,
}

/// `GET /v1/assets?class=&after=&limit=`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<AssetPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let filter = AssetFilter {
        class: query.class,
        after: query.after,
        limit,
    };
    let assets = state.store.list_assets(&filter).await?;
    let next = (assets.len() as i64 == limit)
        .then(|| assets.last().map(|a| a.name.clone()))
        .flatten();
    Ok(Json(AssetPage { assets, next }))
}

/// The asset a path names: its name checked, 404 `not_found` when there is none.
pub async fn named(state: &AppState, name: &str) -> Result<Asset, ApiError> {
    check_name("name", name)?;
    match state.store.asset_by_name(name).await {
        Ok(asset) => Ok(asset),
        Err(crate::store::Error::NotFound(_)) => Err(ApiError::NotFound(format!("asset {name}"))),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/assets/{name}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Asset>, ApiError> {
    Ok(Json(named(&state, &name).await?))
}

/// Body of `PUT /v1/assets/{name}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAsset {
    class: Option<String>,
    #[serde(default)]
    labels: Option<Value>,
}

/// `PUT /v1/assets/{name}`: creates the asset (201) or replaces its class and labels (200).
pub async fn put(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<PutAsset>,
) -> Result<(StatusCode, Json<Asset>), ApiError> {
    check_name("name", &name)?;
    let class = body.class.unwrap_or_else(|| DEFAULT_CLASS.to_owned());
    check_name("class", &class)?;
    let labels = body
        .labels
        .unwrap_or_else(|| Value::Object(Default::default()));
    let Value::Object(map) = &labels else {
        return Err(ApiError::invalid("labels", "must be an object of strings"));
    };
    if !map.values().all(Value::is_string) {
        return Err(ApiError::invalid("labels", "must be an object of strings"));
    }
    let (asset, created) = state
        .store
        .upsert_asset(&NewAsset {
            name,
            class,
            labels,
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(asset)))
}
