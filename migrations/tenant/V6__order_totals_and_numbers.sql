-- Purchase orders, cheaper to write. Never edit this file once released.
--
-- 1. An order's total follows its lines once per statement instead of once per line: adding
-- n lines in one statement updated the order n times, each summing all its lines (O(n²)
-- work, n new row versions, n version bumps). The rules are the same: lines change only
-- while their order is a draft, and the total is the exact sum of the line totals.

DROP TRIGGER purchase_order_lines_changed ON purchase_order_lines;
DROP FUNCTION purchase_order_lines_changed();

-- One function for the three triggers (a trigger with transition tables has one event);
-- each branch reads only the transition tables its event has.
CREATE FUNCTION purchase_order_lines_settle() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    affected uuid[];
    blocked record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT order_id) INTO affected FROM inserted_lines;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT order_id) INTO affected FROM deleted_lines;
    ELSE
        SELECT array_agg(DISTINCT order_id) INTO affected
          FROM (SELECT order_id FROM new_lines UNION SELECT order_id FROM old_lines) AS changed;
    END IF;
    IF affected IS NULL THEN
        RETURN NULL;
    END IF;
    -- The orders, locked in one order (two statements never wait on each other in turn).
    PERFORM 1 FROM purchase_orders WHERE id = ANY (affected) ORDER BY id FOR UPDATE;
    SELECT id, status INTO blocked FROM purchase_orders
     WHERE id = ANY (affected) AND status <> 'draft' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'purchase order % is %, its lines cannot change', blocked.id, blocked.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'purchase_order_lines_draft_only';
    END IF;
    UPDATE purchase_orders AS o
       SET total = (SELECT COALESCE(sum(l.line_total), 0) FROM purchase_order_lines AS l
                     WHERE l.order_id = o.id),
           updated_at = now()
     WHERE o.id = ANY (affected);
    RETURN NULL;
END;
$$;

CREATE TRIGGER purchase_order_lines_inserted AFTER INSERT ON purchase_order_lines
REFERENCING NEW TABLE AS inserted_lines
FOR EACH STATEMENT EXECUTE FUNCTION purchase_order_lines_settle();
CREATE TRIGGER purchase_order_lines_updated AFTER UPDATE ON purchase_order_lines
REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines
FOR EACH STATEMENT EXECUTE FUNCTION purchase_order_lines_settle();
CREATE TRIGGER purchase_order_lines_deleted AFTER DELETE ON purchase_order_lines
REFERENCING OLD TABLE AS deleted_lines
FOR EACH STATEMENT EXECUTE FUNCTION purchase_order_lines_settle();

-- 2. An order takes its number as late as it can: when its transaction commits, or where
-- the writer asks for it (`SET CONSTRAINTS purchase_orders_numbered IMMEDIATE`), no longer
-- at its INSERT. From taking a number to committing, the counter row is locked and every
-- other order creation of the tenant waits; taken at the INSERT, it stayed locked while
-- the lines were written too. Until then the order carries a placeholder (`pending-<id>`)
-- that no committed row keeps: numbers stay without gaps and in commit order.
CREATE OR REPLACE FUNCTION purchase_order_number() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.number := 'pending-' || NEW.id;
    RETURN NEW;
END;
$$;

CREATE FUNCTION purchase_order_take_number() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    next bigint;
BEGIN
    -- Gone since (deleted in the same transaction) or numbered already: nothing to do.
    PERFORM 1 FROM purchase_orders WHERE id = NEW.id AND number = 'pending-' || NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE counters SET value = value + 1 WHERE name = 'purchase_order' RETURNING value INTO next;
    UPDATE purchase_orders
       SET number = 'PO-' || CASE WHEN next < 1000000 THEN lpad(next::text, 6, '0') ELSE next::text END
     WHERE id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER purchase_orders_numbered AFTER INSERT ON purchase_orders
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION purchase_order_take_number();
