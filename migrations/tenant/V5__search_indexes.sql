-- Search on a resource's name and business key, backed by trigram indexes (one per column:
-- the planner costs a two-column GIN index far too high for an OR of its columns). The
-- router matches anywhere for three characters or more and at the start for fewer; the
-- trigram indexes serve both (a prefix pattern has its padded first trigrams). Without
-- fastupdate, a row is indexed when written rather than queued in a pending list that
-- every search scans until the next vacuum: steady search times for slightly dearer writes.
-- pg_trgm is installed in this schema by the platform before any step runs (a step runs as
-- the schema owner, who may not create extensions); stop here, whole, if it is missing.
-- Never edit this file once released.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        RAISE EXCEPTION 'the pg_trgm extension is missing: install it first '
            '(CREATE EXTENSION pg_trgm WITH SCHEMA app, as a role that may)';
    END IF;
END;
$$;

CREATE INDEX customers_name_search_idx ON customers USING gin (lower(name) gin_trgm_ops)
    WITH (fastupdate = off);
CREATE INDEX customers_code_search_idx ON customers USING gin (lower(code) gin_trgm_ops)
    WITH (fastupdate = off);
CREATE INDEX suppliers_name_search_idx ON suppliers USING gin (lower(name) gin_trgm_ops)
    WITH (fastupdate = off);
CREATE INDEX suppliers_code_search_idx ON suppliers USING gin (lower(code) gin_trgm_ops)
    WITH (fastupdate = off);
CREATE INDEX products_name_search_idx ON products USING gin (lower(name) gin_trgm_ops)
    WITH (fastupdate = off);
CREATE INDEX products_sku_search_idx ON products USING gin (lower(sku) gin_trgm_ops)
    WITH (fastupdate = off);
