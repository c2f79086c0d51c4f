-- An order's total follows its lines once per statement instead of once per line: adding
-- n lines in one statement updated the order n times, each summing all its lines (O(n²)
-- work, n new row versions, n version bumps). The rules are the same: lines change only
-- while their order is a draft, and the total is the exact sum of the line totals.
-- Never edit this file once released.

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
