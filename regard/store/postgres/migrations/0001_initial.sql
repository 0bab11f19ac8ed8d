-- Regard's PostgreSQL schema, version 1. Applied once, in one transaction, by
-- regard.store.postgres (which records it in regard_schema_version). Never edit a released
-- migration: add 0002_*.sql.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE collections (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    retention_days INTEGER,
    min_quality TEXT NOT NULL,
    store_thumbnails BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    threshold DOUBLE PRECISION,
    threshold_source TEXT,
    -- Kept by the statement triggers below, so a search knows the gallery's size without COUNT(*).
    face_count BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE persons (
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    person_id TEXT NOT NULL,
    display_name TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (collection_id, person_id)
);

CREATE TABLE consents (
    collection_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    basis TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    reference TEXT,
    PRIMARY KEY (collection_id, person_id),
    FOREIGN KEY (collection_id, person_id) REFERENCES persons(collection_id, person_id) ON DELETE CASCADE
);
CREATE INDEX consents_by_expiry ON consents (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE faces (
    row BIGSERIAL PRIMARY KEY,
    face_id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    person_id TEXT,
    external_image_id TEXT,
    box_left DOUBLE PRECISION NOT NULL,
    box_top DOUBLE PRECISION NOT NULL,
    box_width DOUBLE PRECISION NOT NULL,
    box_height DOUBLE PRECISION NOT NULL,
    quality_score DOUBLE PRECISION NOT NULL,
    quality_level TEXT NOT NULL,
    embedding vector(128) NOT NULL,
    thumbnail BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (collection_id, person_id) REFERENCES persons(collection_id, person_id) ON DELETE CASCADE
);
CREATE INDEX faces_by_collection ON faces (collection_id, row);
CREATE INDEX faces_by_person ON faces (collection_id, person_id);
CREATE INDEX faces_by_image ON faces (collection_id, external_image_id);
CREATE INDEX faces_by_age ON faces (collection_id, created_at);
-- Euclidean distance (vector_l2_ops): the embedder's native metric, as regard.match scores it.
CREATE INDEX faces_embedding_hnsw ON faces USING hnsw (embedding vector_l2_ops) WITH (m = 24, ef_construction = 128);

CREATE FUNCTION regard_count_faces_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE collections c SET face_count = c.face_count + n.count
    FROM (SELECT collection_id, COUNT(*) AS count FROM added GROUP BY collection_id) n
    WHERE c.id = n.collection_id;
    RETURN NULL;
END $$;
CREATE FUNCTION regard_count_faces_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE collections c SET face_count = c.face_count - n.count
    FROM (SELECT collection_id, COUNT(*) AS count FROM removed GROUP BY collection_id) n
    WHERE c.id = n.collection_id;
    RETURN NULL;
END $$;
CREATE TRIGGER faces_counted_in AFTER INSERT ON faces REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION regard_count_faces_added();
CREATE TRIGGER faces_counted_out AFTER DELETE ON faces REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION regard_count_faces_removed();

CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    collections TEXT,
    default_purpose TEXT,
    rate_per_minute INTEGER,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TIMESTAMPTZ,
    revoked_by TEXT
);

-- The audit log: see regard/audit/log.py (hash format) and regard/audit/pglog.py (locking).
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    collection TEXT,
    purpose TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_collection ON audit_log (collection, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_time ON audit_log (time);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
-- Always one row to lock (seq 0 and the genesis hash until the first entry).
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, repeat('0', 64));

-- Append-only, enforced by the database against mistakes in application code. (A superuser can
-- drop these; the hash chain and an external copy of the head catch that.)
CREATE FUNCTION regard_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION regard_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION regard_audit_append_only();
CREATE FUNCTION regard_audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_head cannot be deleted';
    END IF;
    IF NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'audit_head only moves forward';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION regard_audit_head_forward_only();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION regard_audit_append_only();
