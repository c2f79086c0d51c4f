-- Purchase orders: numbers without gaps, and idempotent creation. Never edit this file
-- once released.

-- A sequence leaves gaps (a rolled-back insert spends its number); a counter row updated
-- in the inserting transaction does not, and concurrent inserts take turns on it.
CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL CHECK (value >= 0)
);
-- It goes on from the highest number ever given, not just the highest left: a number of
-- an order since removed is never given again.
INSERT INTO counters (name, value)
SELECT 'purchase_order', GREATEST(
    (SELECT COALESCE(max(substring(number FROM 4)::bigint), 0) FROM purchase_orders),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM purchase_order_number_seq));

ALTER TABLE purchase_orders ALTER COLUMN number DROP DEFAULT;
DROP SEQUENCE purchase_order_number_seq;

-- The function finds its tables whatever the caller's search_path (an operator's session,
-- a restore): the one of this migration is kept with it.
CREATE FUNCTION purchase_order_number() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    next bigint;
BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'purchase_order' RETURNING value INTO next;
    NEW.number := 'PO-' || CASE WHEN next < 1000000 THEN lpad(next::text, 6, '0') ELSE next::text END;
    RETURN NEW;
END;
$$;
CREATE TRIGGER purchase_orders_number BEFORE INSERT ON purchase_orders
FOR EACH ROW EXECUTE FUNCTION purchase_order_number();

-- The first answer to a request sent with an `Idempotency-Key`, per principal: a retry
-- gets it again; the same key with another body is refused.
CREATE TABLE idempotency_keys (
    actor        text NOT NULL CHECK (length(actor) <= 100),
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    route        text NOT NULL,
    request_hash bytea NOT NULL CHECK (length(request_hash) = 32),
    status       integer NOT NULL,
    body         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
