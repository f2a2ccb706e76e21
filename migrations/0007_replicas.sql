-- Several replicas behave as one: the alert hysteresis is counted in the database, and each
-- job run says what started it (a scheduled run names its tick, which only one replica can
-- take).

create unlogged table alert_streak (
    asset       text primary key,
    above       integer not null check (above >= 0),
    updated_at  timestamptz not null default now()
);
comment on table alert_streak is
    'Alert hysteresis shared by every replica: per asset name, how many consecutive scored '
    'windows were at or above the threshold. Changed only by vigil_alert_window, under the '
    'row''s lock, so N replicas open and clear alerts exactly as one would. Unlogged (no '
    'WAL on the scoring path): a database crash resets the counts, so an alert then opens '
    'up to fire_windows windows later.';

-- One scored window of `p_asset`: `p_above` when its level is at or above the threshold,
-- `p_calm` when it is below the clear threshold. Returns 'fire' when the streak has reached
-- `p_fire_windows` and no alert is open, 'clear' when the window is calm and an alert is
-- open, else 'stay'. The caller opens (idempotently, one open alert per asset) or clears it.
create function vigil_alert_window(
    p_asset text, p_above boolean, p_calm boolean, p_fire_windows integer
) returns text language plpgsql as $$
declare
    streak integer;
    is_open boolean;
begin
    if p_above then
        insert into alert_streak as s (asset, above) values (p_asset, 1)
        on conflict (asset) do update
            set above = least(s.above, 1000000000) + 1, updated_at = now()
        returning s.above into streak;
        if streak < greatest(p_fire_windows, 1) then
            return 'stay';
        end if;
    else
        update alert_streak set above = 0, updated_at = now()
        where asset = p_asset and above > 0;
        if not p_calm then
            return 'stay';
        end if;
    end if;
    select exists (
        select 1 from alert a join asset s using (asset_id)
        where s.name = p_asset and a.state = 'open'
    ) into is_open;
    if p_above then
        return case when is_open then 'stay' else 'fire' end;
    end if;
    return case when is_open then 'clear' else 'stay' end;
end
$$;

-- Many windows at once, in one statement: decisions in the order given. Rows are locked in
-- asset order (windows of one asset keep their order), so two replicas' batches never wait
-- on each other in a circle.
create function vigil_alert_windows(
    p_assets text[], p_above boolean[], p_calm boolean[], p_fire_windows integer[]
) returns text[] language plpgsql as $$
declare
    decisions text[] := array_fill(''::text, array[coalesce(array_length(p_assets, 1), 0)]);
    i integer;
begin
    for i in
        select k from generate_subscripts(p_assets, 1) k order by p_assets[k], k
    loop
        decisions[i] := vigil_alert_window(p_assets[i], p_above[i], p_calm[i], p_fire_windows[i]);
    end loop;
    return decisions;
end
$$;

alter table job_run add column trigger text
    check (trigger in ('schedule', 'drift', 'manual'));
alter table job_run add column scheduled_for timestamptz;
comment on column job_run.trigger is
    'What started the run: its schedule, drift of live data, or a person (CLI or '
    '`POST /v1/models/train`); null for runs recorded before migration 0007.';
comment on column job_run.scheduled_for is
    'The schedule''s tick a scheduled run belongs to, or the drift period a drift run '
    'belongs to; one run per job, trigger and tick, whichever replica takes it.';
create unique index job_run_tick_key on job_run (job, trigger, scheduled_for)
    where scheduled_for is not null;

-- Drift of live windows from a model's reference windows: each replica adds what it scored
-- (counts per feature bin and probability bin) every few seconds; the drift check sums the
-- recent rows, measures the population stability index and records it.
create table model_drift_counts (
    model_drift_counts_id bigint generated always as identity primary key,
    model_id    bigint not null references model (model_id) on delete cascade,
    asset_class text not null default '',
    period_end  timestamptz not null default now(),
    windows     bigint not null check (windows >= 0),
    counts      jsonb not null
);
comment on table model_drift_counts is
    'Live windows a replica scored with a model (asset_class: the class bundle that '
    'answered, '''' for the fleet-wide one) up to period_end, counted per bin of each '
    'feature and of the probability (counts: an array per feature, then the probability''s).';
create index model_drift_counts_model_idx on model_drift_counts (model_id, period_end);

create table model_drift (
    model_drift_id  bigint generated always as identity primary key,
    model_id        bigint not null references model (model_id) on delete cascade,
    checked_at      timestamptz not null default now(),
    since           timestamptz not null,
    windows         bigint not null,
    score_psi       double precision,
    max_feature_psi double precision,
    top_features    jsonb not null default '[]'::jsonb,
    over_threshold  boolean not null,
    job_run_id      bigint references job_run (job_run_id) on delete set null
);
comment on table model_drift is
    'A drift check of a model: the live windows since `since` against its reference windows '
    '(population stability index of the probability and of each feature, the five that moved '
    'most), whether that was over the threshold, and the training run it started, if any.';
create index model_drift_model_idx on model_drift (model_id, checked_at desc);

-- Shadow challengers: a new model that beat the champion on validation can first score live
-- windows beside it (status `shadow`: its scores stored, no alerts, no actions) for a while;
-- then it is promoted or dropped on what happened meanwhile as well as on validation.
alter table model drop constraint model_status_check;
alter table model add constraint model_status_check
    check (status in ('training', 'candidate', 'shadow', 'active', 'retired', 'failed'));

create table model_shadow (
    model_id     bigint primary key references model (model_id) on delete cascade,
    champion_id  bigint references model (model_id) on delete set null,
    started_at   timestamptz not null default now(),
    ends_at      timestamptz not null,
    decided_at   timestamptz,
    decision     text check (decision in ('promoted', 'dropped')),
    decided_by   text,
    reason       text,
    figures      jsonb not null default '{}'::jsonb,
    check ((decided_at is null) = (decision is null))
);
comment on table model_shadow is
    'A challenger''s shadow period beside the champion: when it ends, and how it was decided '
    '(promoted or dropped, by whom, why), with both models'' figures on the live windows and '
    'on validation.';

create table shadow_score (
    model_id             bigint not null references model (model_id) on delete cascade,
    champion_id          bigint,
    asset                text not null,
    window_end           timestamptz not null,
    probability          double precision not null,
    champion_probability double precision,
    threshold            double precision not null,
    scored_at            timestamptz not null default now()
);
comment on table shadow_score is
    'A live window scored by a shadow challenger (model_id) beside the champion that answered '
    '(champion_id, its probability, the threshold in force): the evidence its promotion is '
    'decided on. Never an alert.';
create index shadow_score_model_idx on shadow_score (model_id, window_end);
