-- Versions for safe concurrent edits (ETag / If-Match), and the permission to approve
-- purchase orders. Never edit this file once released.

ALTER TABLE customers ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE suppliers ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE purchase_orders ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- Every update of a row is a new version, whatever code path made it.
CREATE FUNCTION bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER customers_version BEFORE UPDATE ON customers
FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER suppliers_version BEFORE UPDATE ON suppliers
FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER products_version BEFORE UPDATE ON products
FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER purchase_orders_version BEFORE UPDATE ON purchase_orders
FOR EACH ROW EXECUTE FUNCTION bump_version();

-- Lists page and sort by these.
CREATE INDEX customers_code_idx ON customers (code, id);
CREATE INDEX suppliers_code_idx ON suppliers (code, id);
CREATE INDEX products_sku_idx ON products (sku, id);
CREATE INDEX customers_name_sort_idx ON customers (name, id);
CREATE INDEX suppliers_name_sort_idx ON suppliers (name, id);
CREATE INDEX products_name_sort_idx ON products (name, id);

-- Money and quantities as the API shows them: exact, trailing zeros trimmed to at least
-- two places ("0.30", "99.999", "5.00").
CREATE FUNCTION decimal_text(value numeric) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN scale(trim_scale(value)) < 2 THEN round(value, 2)::text
                ELSE trim_scale(value)::text END
$$;

INSERT INTO permissions (code, description)
VALUES ('orders.approve', 'Submit, receive and cancel purchase orders');
INSERT INTO role_permissions (role_id, permission)
SELECT id, 'orders.approve' FROM roles WHERE is_system AND name = 'admin';
