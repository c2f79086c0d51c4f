-- The tenant database's first schema. It runs in the schema `app`, as the role that owns
-- the schema (never as the tenant's own role), in the template database of each server;
-- tenant databases are cloned from the template. Never edit this file once released.

-- Users of the tenant's application, with brute-force lock fields.
CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email           text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    display_name    text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    password_hash   text NOT NULL,
    is_active       boolean NOT NULL DEFAULT true,
    failed_logins   integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    first_failed_at timestamptz,
    locked_until    timestamptz,
    last_login_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- RBAC: permissions are fixed codes; roles group them; users hold roles.
CREATE TABLE permissions (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z_]+\.[a-z_]+$'),
    description text NOT NULL
);
INSERT INTO permissions (code, description) VALUES
    ('users.read', 'See users'),
    ('users.write', 'Create, change and remove users and their roles'),
    ('roles.read', 'See roles and permissions'),
    ('roles.write', 'Create, change and remove roles and their permissions'),
    ('customers.read', 'See customers'),
    ('customers.write', 'Create, change and remove customers'),
    ('suppliers.read', 'See suppliers'),
    ('suppliers.write', 'Create, change and remove suppliers'),
    ('products.read', 'See products'),
    ('products.write', 'Create, change and remove products'),
    ('orders.read', 'See purchase orders'),
    ('orders.write', 'Create and change purchase orders'),
    ('audit.read', 'See the audit log');

CREATE TABLE roles (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    -- System roles (the first admin's) cannot be deleted or stripped.
    is_system   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX roles_name_key ON roles (lower(name));

CREATE TABLE role_permissions (
    role_id    uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission text NOT NULL REFERENCES permissions (code) ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (role_id, permission)
);

CREATE TABLE user_roles (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

INSERT INTO roles (name, description, is_system) VALUES ('admin', 'Holds every permission', true);
INSERT INTO role_permissions (role_id, permission)
SELECT roles.id, permissions.code FROM roles CROSS JOIN permissions WHERE roles.name = 'admin';

-- Refresh tokens are stored as SHA-256 hashes; a used token is revoked and replaced.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL CHECK (length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    replaced_by uuid REFERENCES refresh_tokens (id)
);
CREATE UNIQUE INDEX refresh_tokens_hash_key ON refresh_tokens (token_hash);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Every write in the tenant: append-only for the application's role.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    actor       text NOT NULL,
    action      text NOT NULL,
    entity_type text NOT NULL,
    entity_id   text NOT NULL,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity_type, entity_id);

-- Business partners. Lists page by (created_at, id) and search by name or code.
CREATE TABLE customers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code       text NOT NULL CHECK (length(code) BETWEEN 1 AND 50),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email      text CHECK (length(email) <= 254),
    phone      text CHECK (length(phone) <= 50),
    address    text CHECK (length(address) <= 1000),
    tax_id     text CHECK (length(tax_id) <= 50),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX customers_code_key ON customers (code);
CREATE INDEX customers_page_idx ON customers (created_at, id);
CREATE INDEX customers_name_idx ON customers (lower(name) text_pattern_ops);

CREATE TABLE suppliers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code       text NOT NULL CHECK (length(code) BETWEEN 1 AND 50),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email      text CHECK (length(email) <= 254),
    phone      text CHECK (length(phone) <= 50),
    address    text CHECK (length(address) <= 1000),
    tax_id     text CHECK (length(tax_id) <= 50),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX suppliers_code_key ON suppliers (code);
CREATE INDEX suppliers_page_idx ON suppliers (created_at, id);
CREATE INDEX suppliers_name_idx ON suppliers (lower(name) text_pattern_ops);

-- Money is exact: numeric, never floating point.
CREATE TABLE products (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku         text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    unit        text NOT NULL DEFAULT 'each' CHECK (length(unit) BETWEEN 1 AND 20),
    unit_price  numeric(18, 4) NOT NULL CHECK (unit_price >= 0),
    currency    text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX products_sku_key ON products (sku);
CREATE INDEX products_page_idx ON products (created_at, id);
CREATE INDEX products_name_idx ON products (lower(name) text_pattern_ops);

CREATE SEQUENCE purchase_order_number_seq;

-- draft -> submitted -> received | cancelled (a draft may also be cancelled).
CREATE TABLE purchase_orders (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number       text NOT NULL DEFAULT 'PO-' || lpad(nextval('purchase_order_number_seq')::text, 6, '0'),
    supplier_id  uuid NOT NULL REFERENCES suppliers (id),
    status       text NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'submitted', 'received', 'cancelled')),
    currency     text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    -- Kept equal to the sum of the lines by a trigger, in the database, exactly.
    total        numeric(20, 4) NOT NULL DEFAULT 0,
    notes        text NOT NULL DEFAULT '' CHECK (length(notes) <= 4000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    submitted_at timestamptz,
    received_at  timestamptz,
    cancelled_at timestamptz
);
CREATE UNIQUE INDEX purchase_orders_number_key ON purchase_orders (number);
CREATE INDEX purchase_orders_supplier_idx ON purchase_orders (supplier_id);
CREATE INDEX purchase_orders_page_idx ON purchase_orders (created_at, id);

CREATE TABLE purchase_order_lines (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id   uuid NOT NULL REFERENCES purchase_orders (id) ON DELETE CASCADE,
    line_no    integer NOT NULL CHECK (line_no >= 1),
    product_id uuid NOT NULL REFERENCES products (id),
    quantity   numeric(18, 4) NOT NULL CHECK (quantity > 0),
    unit_price numeric(18, 4) NOT NULL CHECK (unit_price >= 0),
    line_total numeric(20, 4) GENERATED ALWAYS AS (round(quantity * unit_price, 4)) STORED,
    UNIQUE (order_id, line_no)
);
CREATE INDEX purchase_order_lines_product_idx ON purchase_order_lines (product_id);

-- Lines change only while their order is a draft; the order's total follows its lines.
CREATE FUNCTION purchase_order_lines_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    affected uuid := COALESCE(NEW.order_id, OLD.order_id);
    order_status text;
BEGIN
    SELECT status INTO order_status FROM purchase_orders WHERE id = affected FOR UPDATE;
    IF order_status IS NOT NULL AND order_status <> 'draft' THEN
        RAISE EXCEPTION 'purchase order % is %, its lines cannot change', affected, order_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'purchase_order_lines_draft_only';
    END IF;
    UPDATE purchase_orders
       SET total = (SELECT COALESCE(sum(line_total), 0) FROM purchase_order_lines WHERE order_id = affected),
           updated_at = now()
     WHERE id = affected;
    RETURN NULL;
END;
$$;
CREATE TRIGGER purchase_order_lines_changed
AFTER INSERT OR UPDATE OR DELETE ON purchase_order_lines
FOR EACH ROW EXECUTE FUNCTION purchase_order_lines_changed();

CREATE FUNCTION purchase_orders_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'draft' AND NEW.status IN ('submitted', 'cancelled'))
        OR (OLD.status = 'submitted' AND NEW.status IN ('received', 'cancelled'))) THEN
        RAISE EXCEPTION 'a purchase order cannot go from % to %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'purchase_orders_status_transition';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER purchase_orders_status_changed
BEFORE UPDATE OF status ON purchase_orders
FOR EACH ROW EXECUTE FUNCTION purchase_orders_status_changed();
