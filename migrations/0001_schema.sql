-- Vigil's schema for the whole mission: metric histories, incidents, scores and alerts,
-- feedback, actions, the model registry and the policy state. Later migrations only add.
-- Conventions: lowercase singular tables, `<table>_id` keys, `created_at`/`updated_at`.

-- Keeps `updated_at` true on every table that has one.
create function vigil_touch_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

create table asset (
    asset_id    bigint generated always as identity primary key,
    name        text not null unique check (length(name) between 1 and 200),
    class       text not null default 'default' check (length(class) between 1 and 100),
    labels      jsonb not null default '{}'::jsonb check (jsonb_typeof(labels) = 'object'),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
comment on table asset is
    'A thing Vigil maintains (server, service, pump, engine). `name` is the identifier users and '
    'scrapers give it; `class` groups assets that share metrics and models; `labels` keeps the '
    'rest (for example Prometheus labels). Created on first sight by ingestion.';
create index asset_class_idx on asset (class);
create trigger asset_touch before update on asset
    for each row execute function vigil_touch_updated_at();

create table metric (
    metric_id   integer generated always as identity primary key,
    name        text not null unique check (length(name) between 1 and 200),
    unit        text,
    description text,
    created_at  timestamptz not null default now()
);
comment on table metric is
    'Dictionary of metric names, so that each sample stores a 4-byte id instead of a string.';

create table sample (
    asset_id    bigint not null,
    metric_id   integer not null,
    ts          timestamptz not null,
    value       double precision not null
        check (value <> 'NaN'::float8 and value <> 'Infinity'::float8 and value <> '-Infinity'::float8),
    primary key (asset_id, metric_id, ts)
) partition by range (ts);
comment on table sample is
    'One timestamped value of one metric of one asset. Range-partitioned by day on `ts` '
    '(partitions `sample_pYYYYMMDD`, created on demand by vigil_ensure_sample_partitions); '
    'retention drops whole partitions. No foreign keys: they would cost a trigger per row on '
    'the ingest path; ingestion resolves asset and metric ids first, and asset deletion '
    'deletes its samples explicitly. The primary key makes re-sent samples idempotent.';

-- Creates the daily partitions of `sample` for the given UTC days, if missing; returns how
-- many it created. Only a batch that needs a new partition takes the advisory lock (held to
-- the end of its transaction), so batches into existing partitions never wait on each other.
create function vigil_ensure_sample_partitions(days date[])
returns integer
language plpgsql as $$
declare
    day date;
    part text;
    created integer := 0;
begin
    foreach day in array days loop
        part := 'sample_p' || to_char(day, 'YYYYMMDD');
        if to_regclass(part) is null then
            perform pg_advisory_xact_lock(hashtext('vigil_sample_partition'));
            -- Another transaction may have created it while this one waited; the catalog
            -- snapshot of this statement may not show it yet, so rely on the error.
            begin
                execute format(
                    'create table %I partition of sample for values from (%L) to (%L)',
                    part,
                    (day::timestamp at time zone 'UTC'),
                    ((day + 1)::timestamp at time zone 'UTC'));
                created := created + 1;
            exception when duplicate_table then
                null;
            end;
        end if;
    end loop;
    return created;
end;
$$;

-- Drops the daily partitions of `sample` that end at or before `cutoff`; returns their names.
create function vigil_drop_sample_partitions(cutoff timestamptz)
returns setof text
language plpgsql as $$
declare
    part record;
begin
    perform pg_advisory_xact_lock(hashtext('vigil_sample_partition'));
    for part in
        select c.relname
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'sample'::regclass
          and c.relname ~ '^sample_p[0-9]{8}$'
          and (to_date(substr(c.relname, 9), 'YYYYMMDD') + 1)::timestamp at time zone 'UTC' <= cutoff
        order by c.relname
    loop
        execute format('drop table %I', part.relname);
        return next part.relname;
    end loop;
end;
$$;

create table incident (
    incident_id bigint generated always as identity primary key,
    asset_id    bigint not null references asset (asset_id) on delete cascade,
    kind        text not null check (length(kind) between 1 and 100),
    severity    text not null default 'major'
        check (severity in ('info', 'warning', 'minor', 'major', 'critical')),
    started_at  timestamptz not null,
    detected_at timestamptz,
    resolved_at timestamptz check (resolved_at is null or resolved_at >= started_at),
    root_cause  text,
    source      text not null default 'api'
        check (source in ('api', 'alertmanager', 'import', 'simulator', 'vigil')),
    fingerprint text,
    labels      jsonb not null default '{}'::jsonb check (jsonb_typeof(labels) = 'object'),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
comment on table incident is
    'A failure of an asset: its kind (the label the diagnosis learns), severity, when it started, '
    'was detected and resolved, its root cause and where the report came from. `fingerprint` '
    'is the external identity (Alertmanager fingerprint): one incident per source, fingerprint '
    'and start time, which makes webhook deliveries idempotent.';
create unique index incident_fingerprint_key on incident (source, fingerprint, started_at)
    where fingerprint is not null;
create index incident_asset_started_idx on incident (asset_id, started_at);
create index incident_open_idx on incident (asset_id) where resolved_at is null;
create trigger incident_touch before update on incident
    for each row execute function vigil_touch_updated_at();

create table model (
    model_id        bigint generated always as identity primary key,
    kind            text not null
        check (kind in ('isolation_forest', 'failure_probability', 'time_to_failure', 'diagnosis', 'bundle')),
    asset_class     text,
    version         integer not null check (version > 0),
    status          text not null default 'candidate'
        check (status in ('training', 'candidate', 'active', 'retired', 'failed')),
    params          jsonb not null default '{}'::jsonb,
    seed            bigint,
    feature_schema  jsonb not null default '{}'::jsonb,
    train_from      timestamptz,
    train_to        timestamptz,
    metrics         jsonb not null default '{}'::jsonb,
    artifact_path   text,
    artifact_sha256 text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    activated_at    timestamptz,
    check (train_from is null or train_to is null or train_from <= train_to)
);
comment on table model is
    'Model registry: one row per trained, versioned artifact (kind, asset class or NULL for '
    'fleet-wide, version), with the params and seed that reproduce it, the feature schema it '
    'expects, its training range, validation metrics, where the artifact lives and its status. '
    'At most one active model per kind and class.';
create unique index model_version_key on model (kind, coalesce(asset_class, ''), version);
create unique index model_active_key on model (kind, coalesce(asset_class, ''))
    where status = 'active';
create trigger model_touch before update on model
    for each row execute function vigil_touch_updated_at();

create table score (
    score_id       bigint generated always as identity primary key,
    asset_id       bigint not null references asset (asset_id) on delete cascade,
    model_id       bigint references model (model_id) on delete set null,
    model_version  text not null,
    window_end     timestamptz not null,
    scored_at      timestamptz not null default now(),
    probability    double precision check (probability between 0 and 1),
    anomaly_score  double precision check (anomaly_score between 0 and 1),
    threshold      double precision check (threshold between 0 and 1),
    is_alert       boolean not null default false,
    failure_kind   text,
    kind_confidence double precision check (kind_confidence between 0 and 1),
    explanation    jsonb not null default '{}'::jsonb
);
comment on table score is
    'One scored window: the failure probability within the model horizon, the anomaly score, '
    'the threshold in force, whether it alerted, the diagnosed kind and the explanation. '
    '`model_version` names the model that answered (or the cold-start detector).';
create index score_asset_window_idx on score (asset_id, window_end desc);

create table alert (
    alert_id      bigint generated always as identity primary key,
    asset_id      bigint not null references asset (asset_id) on delete cascade,
    score_id      bigint references score (score_id) on delete set null,
    model_id      bigint references model (model_id) on delete set null,
    model_version text not null,
    state         text not null default 'open' check (state in ('open', 'cleared')),
    opened_at     timestamptz not null default now(),
    cleared_at    timestamptz check (cleared_at is null or cleared_at >= opened_at),
    probability   double precision not null check (probability between 0 and 1),
    anomaly_score double precision check (anomaly_score between 0 and 1),
    threshold     double precision not null check (threshold between 0 and 1),
    failure_kind  text,
    explanation   jsonb not null default '{}'::jsonb,
    incident_id   bigint references incident (incident_id) on delete set null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
comment on table alert is
    'An alert opened when an asset''s score crossed the threshold (with hysteresis), and '
    'cleared when it fell below the clear threshold. At most one open alert per asset. '
    '`incident_id` links it to the failure it predicted, once known.';
create unique index alert_one_open_key on alert (asset_id) where state = 'open';
create index alert_opened_idx on alert (opened_at desc);
create trigger alert_touch before update on alert
    for each row execute function vigil_touch_updated_at();

create table alert_feedback (
    alert_feedback_id bigint generated always as identity primary key,
    alert_id          bigint not null references alert (alert_id) on delete cascade,
    label             text not null check (label in ('true_alarm', 'false_alarm')),
    failure_kind      text,
    note              text,
    client_key        text not null unique check (length(client_key) between 1 and 200),
    author            text not null,
    created_at        timestamptz not null default now()
);
comment on table alert_feedback is
    'What an operator said about an alert: true or false alarm, optionally the failure kind. '
    'Idempotent by the client key. Feeds the adaptive thresholds.';
create index alert_feedback_alert_idx on alert_feedback (alert_id);

create table incident_outcome (
    incident_outcome_id  bigint generated always as identity primary key,
    incident_id          bigint not null references incident (incident_id) on delete cascade,
    source               text not null check (source in ('human', 'verification', 'vigil')),
    root_cause           text,
    actions_tried        jsonb not null default '[]'::jsonb check (jsonb_typeof(actions_tried) = 'array'),
    healed_by            text,
    time_to_recover_secs double precision check (time_to_recover_secs >= 0),
    missed_detection     boolean not null default false,
    client_key           text unique check (length(client_key) between 1 and 200),
    author               text not null,
    created_at           timestamptz not null default now()
);
comment on table incident_outcome is
    'How an incident ended: root cause, the actions tried in order, the one that healed it, '
    'the time to recover, and whether Vigil missed it (no alert before it). Automatic '
    'verification writes source = verification; a later human outcome overrides it (the '
    'newest human row wins, else the newest row).';
create index incident_outcome_incident_idx on incident_outcome (incident_id, created_at desc);

create table action (
    action_id      bigint generated always as identity primary key,
    asset_id       bigint not null references asset (asset_id) on delete cascade,
    alert_id       bigint references alert (alert_id) on delete set null,
    incident_id    bigint references incident (incident_id) on delete set null,
    name           text not null,
    executor       text not null check (executor in ('webhook', 'command', 'dry_run')),
    params         jsonb not null default '{}'::jsonb,
    reason         text not null,
    failure_kind   text,
    mode           text not null check (mode in ('observe', 'approve', 'auto')),
    state          text not null check (state in ('recommended', 'awaiting_approval', 'approved',
                       'rejected', 'expired', 'blocked', 'running', 'succeeded', 'failed')),
    guard_decision jsonb not null default '{}'::jsonb,
    requested_at   timestamptz not null default now(),
    expires_at     timestamptz,
    decided_by     text,
    decided_at     timestamptz,
    started_at     timestamptz,
    finished_at    timestamptz,
    result         jsonb,
    verification   text not null default 'pending'
        check (verification in ('pending', 'healed', 'not_healed', 'skipped')),
    verified_at    timestamptz,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);
comment on table action is
    'A corrective action (catalog name such as restart or rollback): why it was chosen, the mode '
    'it ran under, what the safety guard decided (always recorded, also when it blocked), its '
    'state, the executor result and the verification of whether it healed the asset.';
create index action_asset_requested_idx on action (asset_id, requested_at desc);
create index action_pending_idx on action (state) where state in ('awaiting_approval', 'approved', 'running');
create trigger action_touch before update on action
    for each row execute function vigil_touch_updated_at();

create table threshold (
    threshold_id bigint generated always as identity primary key,
    asset_class  text not null unique,
    fire_at      double precision not null check (fire_at between 0 and 1),
    clear_at     double precision not null check (clear_at between 0 and 1 and clear_at <= fire_at),
    pinned       boolean not null default false,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);
comment on table threshold is
    'The alert threshold in force per asset class (`*` is the global fallback): fire at '
    '`fire_at`, clear below `clear_at` (hysteresis). A pinned threshold is not adapted.';
create trigger threshold_touch before update on threshold
    for each row execute function vigil_touch_updated_at();

create table threshold_change (
    threshold_change_id bigint generated always as identity primary key,
    asset_class  text not null,
    old_fire_at  double precision,
    new_fire_at  double precision not null,
    old_clear_at double precision,
    new_clear_at double precision not null,
    reason       text not null,
    evidence     jsonb not null default '{}'::jsonb,
    actor        text not null,
    created_at   timestamptz not null default now()
);
comment on table threshold_change is
    'History of every threshold change: old and new values, the evidence (labelled counts, '
    'expected costs) and the reason, and who or what made it (the adapter or an admin).';
create index threshold_change_class_idx on threshold_change (asset_class, created_at desc);

create table action_outcome_stat (
    failure_kind text not null,
    asset_class  text not null,
    action_name  text not null,
    healed       bigint not null default 0 check (healed >= 0),
    not_healed   bigint not null default 0 check (not_healed >= 0),
    updated_at   timestamptz not null default now(),
    primary key (failure_kind, asset_class, action_name)
);
comment on table action_outcome_stat is
    'Per failure kind, asset class and action: how often the action healed and did not heal. '
    'With the priors from config these are the Beta posteriors that action choice samples.';

create table guard_setting (
    name       text primary key,
    value      jsonb not null,
    updated_by text not null,
    updated_at timestamptz not null default now()
);
comment on table guard_setting is
    'Runtime switches of the safety guard shared by all replicas, such as the global kill switch.';

create table job_run (
    job_run_id  bigint generated always as identity primary key,
    job         text not null,
    started_at  timestamptz not null default now(),
    finished_at timestamptz,
    status      text not null default 'running' check (status in ('running', 'succeeded', 'failed')),
    detail      jsonb not null default '{}'::jsonb
);
comment on table job_run is
    'One run of a scheduled job (nightly retraining, retention): when, how it ended, and what it did.';
create index job_run_job_started_idx on job_run (job, started_at desc);
