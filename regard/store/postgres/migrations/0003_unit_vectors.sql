-- Regard 0.2 compares faces by the angle between their embeddings (regard/match.py) and stores
-- them scaled to length 1, so that the HNSW index's Euclidean distance orders faces as the score
-- does. Faces enrolled before are scaled here (pgvector 0.7+'s l2_normalize); the index follows
-- the rows. A collection's own search threshold (regard audit --apply-to) was a score on the old
-- scale, which no longer means the same false-match rate: it is cleared, so searches use the
-- calibrated default until the audit is run again (see docs/STORAGE.md).
SET LOCAL maintenance_work_mem = '2GB';
UPDATE faces SET embedding = l2_normalize(embedding);
UPDATE collections SET threshold = NULL,
    threshold_source = json_build_object('cleared_by', '0003_unit_vectors',
                                         'previous_threshold', threshold,
                                         'previous_source', threshold_source::json)::text
WHERE threshold IS NOT NULL;
