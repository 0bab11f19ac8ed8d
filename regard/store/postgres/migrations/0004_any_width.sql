-- Regard 0.3 (issue 20): a collection may be pinned to an operator's recognition model, whose
-- vectors may have another width than the built-in model's 128 (2 to 4096). The faces column holds
-- vectors of any width; every collection's vectors are of its model's width (regard/store/core.py
-- checks the model before anything is stored or searched).
--
-- pgvector's HNSW index needs vectors of one width, and an expression index the cast to a fixed
-- width: the 128-d index now holds the half-precision copies of the 128-d vectors only (the CASE
-- gives NULL for other widths, which pgvector leaves out of the graph; the cast of a vector of
-- another width would fail). Each other width gets its own index alike, faces_embedding_hnsw_<width>,
-- made by the backend at the first enrolment of that width (regard/store/postgres/backend.py,
-- ensure_index), and none above 4000 (pgvector's limit for halfvec: searched exactly). Searches
-- order by the index's own expression (regard/store/postgres/search.py, indexed()), so statements
-- that ordered by INDEXED before still use the 128-d index.
--
-- Existing 128-d rows are kept as they are: dropping the column's fixed width rewrites no row (the
-- type is the same), but the index is built again over them, which takes as long as 0002's did
-- (about 18 minutes at a million faces on 2 cores) while the upgrade holds the migration lock:
-- upgrade a large database in a maintenance window. (It is dropped first so that ALTER TABLE does
-- not rebuild the old one only for it to be replaced.)
SET LOCAL maintenance_work_mem = '2GB';
DROP INDEX IF EXISTS faces_embedding_hnsw;
ALTER TABLE faces ALTER COLUMN embedding TYPE vector;
CREATE INDEX faces_embedding_hnsw ON faces USING hnsw
    (((CASE WHEN vector_dims(embedding) = 128 THEN embedding END)::halfvec(128)) halfvec_l2_ops)
    WITH (m = 24, ef_construction = 200);
