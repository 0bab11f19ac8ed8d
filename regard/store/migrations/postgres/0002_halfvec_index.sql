-- The HNSW index holds half-precision copies of the embeddings (pgvector's halfvec, 0.7 or newer);
-- the faces table keeps the exact vectors, and searches score candidates with them. The graph is
-- 651 MB instead of 902 MB at a million faces, and searching it is about a fifth faster, with the
-- same recall (bench/search.py --store; see regard/store/postgres.py). Rebuilding the index on a
-- large existing table takes minutes (about 13 at a million faces on 2 cores).
DROP INDEX IF EXISTS faces_embedding_hnsw;
CREATE INDEX faces_embedding_hnsw ON faces USING hnsw ((embedding::halfvec(128)) halfvec_l2_ops)
    WITH (m = 24, ef_construction = 128);
