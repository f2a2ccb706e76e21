-- Models in the database: each version's artifact is stored with its row, so that any
-- replica on any host loads it by id. Files under `models/` become an export
-- (`vigil models export`), not the source of truth. Rows registered before keep their
-- `artifact_path` and are read from that file.

create table model_artifact (
    model_id    bigint primary key references model (model_id) on delete cascade,
    encoding    text not null check (encoding in ('snappy')),
    size        bigint not null check (size >= 0),
    bytes       bytea not null
);
comment on table model_artifact is
    'A model''s artifact (the bundle JSON), compressed as `encoding` says, `size` bytes '
    'uncompressed; checked against model.artifact_sha256 whenever it is loaded.';
