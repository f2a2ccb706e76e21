//! The route table and the OpenAPI document generated from it.
//!
//! Every route is declared once, in [`endpoints`]: its method, path, access, summary,
//! handler, and the Rust types of its query, body and answer. [`super::router`] builds the
//! router from this table and [`document`] the OpenAPI 3.1 document (`GET /openapi.json`),
//! with JSON Schemas derived from the same types serde uses (`schemars` honours the serde
//! attributes), so the document cannot miss a route or drift from the wire format.

use std::sync::OnceLock;

use axum::Json;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post, put};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::auth::Access;
use super::{
    AppState, actions, alerts, assets, config, error, health, incidents, jobs, metrics, models,
    policy, remote_write, samples, score,
};
use crate::config::Scope;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a route takes or answers besides JSON.
#[derive(Debug, Clone, Copy)]
enum Content {
    /// JSON of this schema.
    Json(SchemaFn),
    /// Another media type, described in words.
    Other(&'static str, &'static str),
    /// Nothing.
    Empty,
}

/// One route: how it is served and how it is documented.
pub struct Endpoint {
    method: Method,
    path: &'static str,
    /// `None`: open to anyone.
    access: Option<Access>,
    summary: &'static str,
    handler: MethodRouter<AppState>,
    query: Option<SchemaFn>,
    body: Content,
    status: u16,
    answer: Content,
    /// A bulk route: the large body limit, and a turn among `http.max_bulk_requests`.
    bulk: bool,
}

impl Endpoint {
    fn new(
        method: Method,
        path: &'static str,
        access: Option<Access>,
        summary: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Self {
        Self {
            method,
            path,
            access,
            summary,
            handler,
            query: None,
            body: Content::Empty,
            status: 200,
            answer: Content::Empty,
            bulk: false,
        }
    }

    fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(schema_of::<T>);
        self
    }

    fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Content::Json(schema_of::<T>);
        self
    }

    fn answers<T: JsonSchema>(mut self) -> Self {
        self.answer = Content::Json(schema_of::<T>);
        self
    }

    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    fn bulk(mut self) -> Self {
        self.bulk = true;
        self
    }

    /// The parts the router needs.
    pub fn into_route(self) -> Route {
        Route {
            path: self.path,
            access: self.access,
            handler: self.handler,
            bulk: self.bulk,
        }
    }
}

/// What the router needs of an [`Endpoint`].
pub struct Route {
    pub path: &'static str,
    /// `None`: open to anyone.
    pub access: Option<Access>,
    pub handler: MethodRouter<AppState>,
    /// A bulk route (see [`crate::config::HttpSettings::body_limit_bytes`]).
    pub bulk: bool,
}

/// A JSON object of any shape.
type AnyObject = Map<String, Value>;

const ANY: Option<Access> = Some(Access::AnyToken);
const INGEST: Option<Access> = Some(Access::Scope(Scope::Ingest));
const SCORE: Option<Access> = Some(Access::Scope(Scope::Score));
const FEEDBACK: Option<Access> = Some(Access::Scope(Scope::Feedback));
const ADMIN: Option<Access> = Some(Access::Scope(Scope::Admin));

/// Every route of the service.
pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        Endpoint::new(
            M::GET,
            "/healthz",
            None,
            "The process is alive.",
            get(health::healthz),
        )
        .answers::<AnyObject>(),
        Endpoint::new(
            M::GET,
            "/readyz",
            None,
            "Ready when the database is reachable and migrations are applied (else 503 not_ready).",
            get(health::readyz),
        )
        .answers::<AnyObject>(),
        Endpoint::new(
            M::GET,
            "/metrics",
            None,
            "Prometheus text: requests and latency by route and status, pool gauges, build info.",
            get(metrics::render),
        )
        .answers_other("text/plain; version=0.0.4", "Prometheus exposition format"),
        Endpoint::new(
            M::GET,
            "/openapi.json",
            None,
            "This document.",
            get(openapi_json),
        )
        .answers::<AnyObject>(),
        Endpoint::new(
            M::GET,
            "/v1/assets",
            ANY,
            "Assets in name order; `next` is the `after` of the next page.",
            get(assets::list),
        )
        .query::<assets::ListQuery>()
        .answers::<assets::AssetPage>(),
        Endpoint::new(
            M::GET,
            "/v1/assets/{name}",
            ANY,
            "One asset.",
            get(assets::get),
        )
        .answers::<crate::store::assets::Asset>(),
        Endpoint::new(
            M::PUT,
            "/v1/assets/{name}",
            INGEST,
            "Create (201) or update (200) an asset's class and labels.",
            put(assets::put),
        )
        .body::<assets::PutAsset>()
        .answers::<crate::store::assets::Asset>(),
        Endpoint::new(
            M::POST,
            "/v1/samples",
            INGEST,
            "Store a batch of samples, whole or not at all; repeated samples are stored once.",
            post(samples::post),
        )
        .bulk()
        .body::<samples::SamplesBody>()
        .answers::<crate::ingest::IngestReport>(),
        Endpoint::new(
            M::GET,
            "/v1/assets/{name}/samples",
            ANY,
            "An asset's history, downsampled when `step` is given.",
            get(samples::read),
        )
        .query::<samples::ReadQuery>()
        .answers::<samples::ReadAnswer>(),
        Endpoint::new(
            M::GET,
            "/v1/assets/{name}/series",
            ANY,
            "An asset's series: key, family, labels, type, first sample.",
            get(samples::series_list),
        )
        .answers::<samples::SeriesList>(),
        Endpoint::new(
            M::POST,
            "/api/v1/write",
            INGEST,
            "Prometheus remote-write 1.0; 204 once durable.",
            post(remote_write::write),
        )
        .bulk()
        .body_other(
            "application/x-protobuf",
            "snappy-compressed prometheus.WriteRequest",
        )
        .status(204),
        Endpoint::new(
            M::POST,
            "/v1/incidents",
            INGEST,
            "Record an incident (201; 200 with the known one for a repeated fingerprint).",
            post(incidents::create),
        )
        .body::<incidents::IncidentBody>()
        .status(201)
        .answers::<crate::store::incidents::Incident>(),
        Endpoint::new(
            M::GET,
            "/v1/incidents",
            ANY,
            "Incidents, newest first.",
            get(incidents::list),
        )
        .query::<incidents::ListQuery>()
        .answers::<incidents::IncidentPage>(),
        Endpoint::new(
            M::POST,
            "/v1/incidents/{id}/resolve",
            INGEST,
            "Resolve an incident.",
            post(incidents::resolve),
        )
        .body::<incidents::ResolveBody>()
        .answers::<crate::store::incidents::Incident>(),
        Endpoint::new(
            M::POST,
            "/v1/incidents/{id}/outcome",
            FEEDBACK,
            "How an incident ended (actions tried, which healed); counts for action choice, \
             overriding automatic verification (idempotent by client_key).",
            post(incidents::outcome),
        )
        .body::<incidents::OutcomeBody>()
        .status(201)
        .answers::<incidents::OutcomeAnswer>(),
        Endpoint::new(
            M::POST,
            "/v1/alertmanager",
            INGEST,
            "Alertmanager webhook: firing opens incidents, resolved resolves them.",
            post(incidents::alertmanager),
        )
        .body::<incidents::AlertmanagerPayload>()
        .answers::<incidents::AlertmanagerAnswer>(),
        Endpoint::new(
            M::POST,
            "/v1/score",
            SCORE,
            "Failure probability of one window within the model's horizon, with explanation \
             (or the cold-start detector's anomaly score when no trained model can answer).",
            post(score::score),
        )
        .body::<score::ScoreRequest>()
        .answers::<crate::scoring::ScoreAnswer>(),
        Endpoint::new(
            M::POST,
            "/v1/score/batch",
            SCORE,
            "Up to 1000 windows (5,000,000 values in all) with one model version; a bad window gets its own error item.",
            post(score::score_batch),
        )
        .bulk()
        .body::<score::BatchRequest>()
        .answers::<score::BatchAnswer>(),
        Endpoint::new(
            M::GET,
            "/v1/assets/{name}/score",
            SCORE,
            "Score the asset's latest stored window.",
            get(score::score_asset),
        )
        .answers::<crate::scoring::ScoreAnswer>(),
        Endpoint::new(
            M::GET,
            "/v1/alerts",
            ANY,
            "Alerts, newest first; `feedback=none` is the queue awaiting feedback.",
            get(alerts::list),
        )
        .query::<alerts::ListQuery>()
        .answers::<alerts::AlertPage>(),
        Endpoint::new(
            M::GET,
            "/v1/alerts/{id}",
            ANY,
            "One alert.",
            get(alerts::get),
        )
        .answers::<crate::store::alerts::AlertRow>(),
        Endpoint::new(
            M::POST,
            "/v1/alerts/{id}/feedback",
            FEEDBACK,
            "True or false alarm (idempotent by client_key; 201 stored, 200 repeated); adapts \
             the thresholds.",
            post(alerts::feedback),
        )
        .body::<alerts::FeedbackBody>()
        .status(201)
        .answers::<alerts::FeedbackAnswer>(),
        Endpoint::new(
            M::GET,
            "/v1/policy/thresholds",
            ANY,
            "Alert thresholds in force by asset class, and their change history.",
            get(policy::thresholds),
        )
        .answers::<policy::ThresholdsAnswer>(),
        Endpoint::new(
            M::PUT,
            "/v1/policy/thresholds/{class}",
            ADMIN,
            "Set (and by default pin) a class's threshold; `*` is the global fallback.",
            put(policy::set_threshold),
        )
        .body::<policy::SetThreshold>()
        .answers::<crate::store::thresholds::Threshold>(),
        Endpoint::new(
            M::POST,
            "/v1/policy/thresholds/{class}/revert",
            ADMIN,
            "Undo the class's latest threshold change.",
            post(policy::revert_threshold),
        )
        .answers::<policy::Reverted>(),
        Endpoint::new(
            M::GET,
            "/v1/actions",
            ANY,
            "Actions, newest first, with the guard's decision on each.",
            get(actions::list),
        )
        .query::<actions::ListQuery>()
        .answers::<actions::ActionList>(),
        Endpoint::new(
            M::GET,
            "/v1/actions/{id}",
            ANY,
            "One action.",
            get(actions::get),
        )
        .answers::<crate::store::actions::ActionRow>(),
        Endpoint::new(
            M::POST,
            "/v1/actions/{id}/approve",
            ADMIN,
            "Approve an action awaiting approval; the guard checks again, then it runs.",
            post(actions::approve),
        )
        .answers::<crate::store::actions::ActionRow>(),
        Endpoint::new(
            M::POST,
            "/v1/actions/{id}/reject",
            ADMIN,
            "Reject an action awaiting approval.",
            post(actions::reject),
        )
        .answers::<crate::store::actions::ActionRow>(),
        Endpoint::new(
            M::GET,
            "/v1/policy/actions",
            ANY,
            "The action catalog and the learned posteriors per failure kind, class and action.",
            get(actions::policy),
        )
        .answers::<actions::ActionPolicy>(),
        Endpoint::new(
            M::GET,
            "/v1/policy/kill-switch",
            ANY,
            "Whether the global kill switch is on.",
            get(actions::kill_switch),
        )
        .answers::<actions::KillSwitch>(),
        Endpoint::new(
            M::PUT,
            "/v1/policy/kill-switch",
            ADMIN,
            "Turn the global kill switch on (no action runs anywhere) or off.",
            put(actions::set_kill_switch),
        )
        .body::<actions::KillSwitch>()
        .answers::<actions::KillSwitch>(),
        Endpoint::new(
            M::GET,
            "/v1/models",
            ANY,
            "Registered models, newest first.",
            get(models::list),
        )
        .answers::<models::ModelList>(),
        Endpoint::new(
            M::GET,
            "/v1/models/{id}",
            ANY,
            "One registered model, with its latest drift check and its shadow period.",
            get(models::get),
        )
        .answers::<models::ModelDetail>(),
        Endpoint::new(
            M::POST,
            "/v1/models/{id}/activate",
            ADMIN,
            "Make a model active (the previous one is retired).",
            post(models::activate),
        )
        .answers::<crate::store::models::ModelRecord>(),
        Endpoint::new(
            M::POST,
            "/v1/models/{id}/promote",
            ADMIN,
            "End a challenger's shadow period early: it becomes active (decision recorded with \
             the live figures so far); 409 when it is not in shadow.",
            post(models::promote),
        )
        .answers::<crate::store::shadow::Shadow>(),
        Endpoint::new(
            M::POST,
            "/v1/models/{id}/drop",
            ADMIN,
            "End a challenger's shadow period early: the champion stays; 409 when it is not in \
             shadow.",
            post(models::drop_shadow),
        )
        .answers::<crate::store::shadow::Shadow>(),
        Endpoint::new(
            M::POST,
            "/v1/models/train",
            ADMIN,
            "Start a training run on this replica (trigger `manual`); 202 with its job run id, \
             409 while another run holds the training lock.",
            post(jobs::start),
        )
        .status(202)
        .answers::<jobs::TrainingStarted>(),
        Endpoint::new(
            M::GET,
            "/v1/jobs",
            ANY,
            "Job runs (training, retention), newest first: trigger, start, end, outcome, figures.",
            get(jobs::list),
        )
        .query::<jobs::ListQuery>()
        .answers::<jobs::JobList>(),
        Endpoint::new(
            M::GET,
            "/v1/jobs/{id}",
            ANY,
            "One job run.",
            get(jobs::get),
        )
        .answers::<crate::store::jobs::JobRun>(),
        Endpoint::new(
            M::GET,
            "/v1/config",
            ADMIN,
            "The effective configuration, secrets masked.",
            get(config::show),
        )
        .answers::<AnyObject>(),
    ]
}

impl Endpoint {
    fn answers_other(mut self, media: &'static str, what: &'static str) -> Self {
        self.answer = Content::Other(media, what);
        self
    }

    fn body_other(mut self, media: &'static str, what: &'static str) -> Self {
        self.body = Content::Other(media, what);
        self
    }
}

fn content(content: Content, generator: &mut SchemaGenerator) -> Option<Value> {
    match content {
        Content::Json(schema) => {
            Some(json!({ "application/json": { "schema": schema(generator) } }))
        }
        Content::Other(media, what) => {
            Some(json!({ media: { "schema": { "description": what } } }))
        }
        Content::Empty => None,
    }
}

/// Query parameters from the properties of the query type's schema.
fn query_parameters(schema: SchemaFn, generator: &mut SchemaGenerator) -> Vec<Value> {
    // Inline the query type itself to read its properties.
    let mut inline = SchemaGenerator::new(SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    }));
    let _ = generator;
    let schema = schema(&mut inline);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, property)| {
                    json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": property,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Path parameters: every `{name}` segment.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = if name == "id" {
                json!({ "type": "integer", "format": "int64" })
            } else {
                json!({ "type": "string" })
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect()
}

/// The OpenAPI 3.1 document of `endpoints`.
pub fn build(endpoints: &[Endpoint]) -> Value {
    let mut generator = SchemaGenerator::new(SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "#/components/schemas/".into();
        s.meta_schema = None;
    }));
    let error_schema = generator.subschema_for::<error::ErrorBody>();
    let mut paths = Map::new();
    for e in endpoints {
        let mut parameters = path_parameters(e.path);
        if let Some(query) = e.query {
            parameters.extend(query_parameters(query, &mut generator));
        }
        let mut responses = Map::new();
        let mut success = json!({ "description": "success" });
        if let Some(c) = content(e.answer, &mut generator) {
            success["content"] = c;
        }
        responses.insert(e.status.to_string(), success);
        let error = json!({
            "description": "error: {\"code\", \"message\"}; branch on `code`",
            "content": { "application/json": { "schema": error_schema } },
        });
        responses.insert("4XX".into(), error.clone());
        responses.insert("5XX".into(), error);
        let mut operation = json!({
            "summary": e.summary,
            "operationId": format!("{} {}", e.method, e.path),
            "responses": responses,
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(c) = content(e.body, &mut generator) {
            operation["requestBody"] = json!({ "required": true, "content": c });
        }
        match e.access {
            None => operation["security"] = json!([]),
            Some(access) => {
                operation["security"] = json!([{ "bearer": [] }]);
                operation["x-vigil-access"] = json!(match access {
                    Access::AnyToken => "any token",
                    Access::Scope(scope) => scope.as_str(),
                });
            }
        }
        let item = paths
            .entry(e.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        item[e.method.as_str().to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vigil",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Predictive maintenance and self-healing: ingest metrics and \
                incidents, score failure risk with explanations. Errors are JSON \
                {\"code\", \"message\"}; with tokens configured, send \
                `Authorization: Bearer <token>` (x-vigil-access names the scope a route needs).",
        },
        "paths": paths,
        "components": {
            "schemas": generator.definitions(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        },
    })
}

/// The document of the service's routes, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| build(&endpoints()))
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Json<&'static Value> {
    Json(document())
}
