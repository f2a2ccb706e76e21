-- Scores partitioned by day on `window_end`, as samples are: retention drops a day's
-- partition whole (`vigil_drop_score_partitions`) instead of deleting rows, which left dead
-- rows for vacuum and cost a scan of the table per run. The alerting scores of a dropped
-- day move to `score_alerting` first, so alerts keep the scores they were raised on.
-- `alert.score_id` was never set by any code: dropped (a foreign key into a partitioned table
-- would need the partition key too).

alter table alert drop column score_id;

-- Creates the missing daily partitions of `parent` (`sample` or `score`) for the given UTC
-- days, named `<parent>_pYYYYMMDD`; returns how many it created. Only a call that needs a
-- new partition takes the parent's advisory lock (to the end of its transaction), so
-- writers into existing partitions never wait on each other.
create function vigil_ensure_day_partitions(parent text, days date[])
returns integer
language plpgsql as $$
declare
    day date;
    part text;
    created integer := 0;
begin
    foreach day in array days loop
        part := parent || '_p' || to_char(day, 'YYYYMMDD');
        if to_regclass(part) is null then
            perform pg_advisory_xact_lock(hashtext('vigil_' || parent || '_partition'));
            -- Another transaction may have created it while this one waited; the catalog
            -- snapshot of this statement may not show it yet, so rely on the error.
            begin
                execute format(
                    'create table %I partition of %I for values from (%L) to (%L)',
                    part,
                    parent,
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

create or replace function vigil_ensure_sample_partitions(days date[])
returns integer
language sql as $$ select vigil_ensure_day_partitions('sample', days) $$;

alter table score rename to score_unpartitioned;
alter index score_asset_window_idx rename to score_unpartitioned_asset_window_idx;

create sequence score_id_seq;
create table score (
    score_id       bigint not null default nextval('score_id_seq'),
    asset_id       bigint not null,
    model_id       bigint,
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
) partition by range (window_end);
alter sequence score_id_seq owned by score.score_id;
comment on table score is
    'One scored window: the failure probability within the model horizon, the anomaly score, '
    'the threshold in force, whether it alerted, the diagnosed kind and the explanation. '
    '`model_version` names the model that answered (or the cold-start detector). '
    'Range-partitioned by day on `window_end` (partitions `score_pYYYYMMDD`, created on demand '
    'by vigil_ensure_day_partitions); retention drops whole partitions after moving their '
    'alerting rows to score_alerting. No foreign keys, for insert speed (migration 0003).';
comment on column score.asset_id is
    'The scored asset (asset.asset_id; not a foreign key, for insert speed: see migration 0003).';
comment on column score.model_id is
    'The registered model that answered (model.model_id), null for the cold-start detector; not '
    'a foreign key, for insert speed (migration 0003).';
create index score_asset_window_idx on score (asset_id, window_end desc);

create table score_alerting (like score including defaults including constraints);
comment on table score_alerting is
    'The alerting scores of days that score retention dropped, kept with the alerts they were '
    'raised on (same columns as score).';
create index score_alerting_asset_window_idx on score_alerting (asset_id, window_end desc);

-- Drops the daily partitions of `score` that end at or before `cutoff`, moving their alerting
-- rows to score_alerting first; returns the dropped partitions' names.
create function vigil_drop_score_partitions(cutoff timestamptz)
returns setof text
language plpgsql as $$
declare
    part record;
begin
    perform pg_advisory_xact_lock(hashtext('vigil_score_partition'));
    for part in
        select c.relname
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'score'::regclass
          and c.relname ~ '^score_p[0-9]{8}$'
          and (to_date(substr(c.relname, 8), 'YYYYMMDD') + 1)::timestamp at time zone 'UTC' <= cutoff
        order by c.relname
    loop
        execute format('insert into score_alerting select * from %I where is_alert', part.relname);
        execute format('drop table %I', part.relname);
        return next part.relname;
    end loop;
end;
$$;

-- The scores stored so far, each into its day's partition.
select vigil_ensure_day_partitions(
    'score',
    coalesce(
        (select array_agg(distinct (window_end at time zone 'UTC')::date) from score_unpartitioned),
        '{}'::date[]));
insert into score
    select * from score_unpartitioned order by window_end;
select setval('score_id_seq', coalesce((select max(score_id) from score_unpartitioned), 0) + 1, false);
drop table score_unpartitioned;
