-- Series identity: a metric in the dictionary is one series, named by its canonical key
-- `family{label="value",...}` (the family alone when it has no labels), so that the 16
-- series of node_cpu_seconds_total are 16 metrics instead of one. Existing metrics have no
-- labels: their key is their name, and nothing about their samples changes.

alter table metric drop constraint metric_name_check;
alter table metric add constraint metric_name_check check (length(name) between 1 and 1000);
alter table metric
    add column family text generated always as (split_part(name, '{', 1)) stored,
    add column labels jsonb not null default '{}'::jsonb;
create index metric_by_family on metric (family);
comment on column metric.family is 'The metric name without labels (`node_cpu_seconds_total`).';
comment on column metric.labels is 'The labels that tell this series apart from others of its family and asset.';

-- What Prometheus says about a metric family (remote-write metadata): counters become
-- rates where models see them.
create table metric_family (
    name        text primary key check (length(name) between 1 and 200),
    type        text not null check (type in ('unknown', 'counter', 'gauge', 'histogram',
                                              'gaugehistogram', 'summary', 'info', 'stateset')),
    help        text,
    unit        text,
    updated_at  timestamptz not null default now()
);
comment on table metric_family is
    'Metadata of metric families from remote-write (type, help, unit), latest wins.';

-- The series each asset has (asset, metric key), so that they can be listed without
-- scanning samples. Ingest adds the new pairs in the batch's own transaction.
create table series (
    asset_id    bigint not null,
    metric_id   integer not null,
    first_ts    timestamptz not null,
    primary key (asset_id, metric_id)
);
comment on table series is 'Which series (metric keys) each asset has, and since when.';
insert into series (asset_id, metric_id, first_ts)
select asset_id, metric_id, min(ts) from sample group by asset_id, metric_id;
