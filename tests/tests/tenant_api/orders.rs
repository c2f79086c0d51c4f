//! Purchase orders: exact totals, the status graph, lines only in draft, `If-Match`,
//! `Idempotency-Key`, gapless numbers under concurrency, isolation, bad input.

use super::*;

const ORDERS: &[&str] = &[
    "suppliers.read",
    "suppliers.write",
    "products.read",
    "products.write",
    "orders.read",
    "orders.write",
    "orders.approve",
];

struct Shop {
    platform: Platform,
    token: String,
    supplier: String,
    product: String,
}

impl Shop {
    async fn open(slugs: &[&str]) -> Self {
        let platform = Platform::start(slugs, &[]).await;
        let token = platform
            .app
            .tenant_token(&platform.admin, slugs[0], ORDERS)
            .await;
        let (status, supplier) = platform
            .call(
                Method::POST,
                "/v1/suppliers",
                &token,
                Some(json!({ "code": "S-1", "name": "Supplier" })),
            )
            .await;
        assert_eq!(status, 201, "{supplier}");
        let (status, product) = platform
            .call(
                Method::POST,
                "/v1/products",
                &token,
                Some(json!({ "sku": "P-1", "name": "Bolt", "unit_price": "0.1" })),
            )
            .await;
        assert_eq!(status, 201, "{product}");
        Self {
            supplier: id(&supplier),
            product: id(&product),
            platform,
            token,
        }
    }

    async fn order(&self, lines: Value) -> (u16, Value) {
        self.platform
            .call(
                Method::POST,
                "/v1/purchase-orders",
                &self.token,
                Some(json!({ "supplier_id": self.supplier, "lines": lines })),
            )
            .await
    }

    fn line(&self, quantity: &str, price: &str) -> Value {
        json!({ "product_id": self.product, "quantity": quantity, "unit_price": price })
    }

    async fn act(&self, order: &str, verb: &str) -> (u16, Value) {
        self.platform
            .call(
                Method::POST,
                &format!("/v1/purchase-orders/{order}/{verb}"),
                &self.token,
                None,
            )
            .await
    }
}

#[tokio::test]
async fn totals_are_exact_and_travel_as_strings() {
    let shop = Shop::open(&["acme"]).await;
    let (status, order) = shop
        .order(json!([shop.line("1", "0.1"), shop.line("1", "0.2")]))
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["total"], "0.30");
    assert_eq!(order["subtotal"], "0.30");
    assert_eq!(order["lines"][1]["line_total"], "0.20");
    assert_eq!(order["number"], "PO-000001");
    let (_, order) = shop.order(json!([shop.line("3", "33.333")])).await;
    assert_eq!(order["total"], "99.999");
    // A missing price is the product's.
    let (_, order) = shop
        .order(json!([{ "product_id": shop.product, "quantity": "2.5" }]))
        .await;
    assert_eq!(order["total"], "0.25");
    // A thousand lines of 0.0001 × 1.0001, summed exactly.
    let lines: Vec<Value> = (0..1000).map(|_| shop.line("1.0001", "0.0001")).collect();
    let (status, order) = shop.order(Value::Array(lines)).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["lines"].as_array().expect("lines").len(), 1000);
    assert_eq!(order["total"], "0.10", "1000 × round(0.00010001, 4)");
    let lines: Vec<Value> = (0..1000).map(|_| shop.line("3", "0.3333")).collect();
    let (_, order) = shop.order(Value::Array(lines)).await;
    assert_eq!(order["total"], "999.90");

    for (line, field) in [
        (
            json!({ "product_id": shop.product, "quantity": 10.3 }),
            "quantity",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "-1" }),
            "quantity",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "0" }),
            "quantity",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "1.00001" }),
            "quantity",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "1", "unit_price": "-0.1" }),
            "unit_price",
        ),
        (
            json!({ "product_id": "00000000-0000-4000-8000-000000000000", "quantity": "1" }),
            "product_id",
        ),
        (
            json!({ "product_id": "'; DROP TABLE products; --", "quantity": "1" }),
            "product_id",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "9".repeat(10_000) }),
            "quantity",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "1e3" }),
            "quantity",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "1", "unit_price": 0.1 }),
            "unit_price",
        ),
        (
            json!({ "product_id": shop.product, "quantity": "1\u{0}" }),
            "quantity",
        ),
    ] {
        let (status, answer) = shop.order(json!([line])).await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(field)),
            "names `{field}`: {answer}"
        );
    }
    for (body, field) in [
        (
            json!({ "supplier_id": shop.supplier, "currency": "ABC" }),
            "currency",
        ),
        (
            json!({ "supplier_id": shop.supplier, "notes": "n".repeat(10_000) }),
            "notes",
        ),
        (
            json!({ "supplier_id": "00000000-0000-4000-8000-000000000000" }),
            "supplier_id",
        ),
        (
            json!({ "supplier_id": shop.supplier, "total": "1.00" }),
            "total",
        ),
        (
            json!({ "supplier_id": shop.supplier, "notes": "a\u{0}b" }),
            "notes",
        ),
        (
            json!({ "supplier_id": shop.supplier, "currency": "usd" }),
            "currency",
        ),
        (json!({ "supplier_id": "1 OR 1=1" }), "supplier_id"),
    ] {
        let (status, answer) = shop
            .platform
            .call(Method::POST, "/v1/purchase-orders", &shop.token, Some(body))
            .await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(field)),
            "names `{field}`: {answer}"
        );
    }
    // SQL's metacharacters are only characters.
    let notes = "'); DROP TABLE purchase_orders; -- \\ % _";
    let (status, order) = shop
        .platform
        .call(
            Method::POST,
            "/v1/purchase-orders",
            &shop.token,
            Some(json!({ "supplier_id": shop.supplier, "notes": notes })),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["notes"], notes);
}

#[tokio::test]
async fn the_status_graph_holds_and_lines_change_only_in_draft() {
    let shop = Shop::open(&["acme"]).await;
    let (_, order) = shop.order(json!([])).await;
    let draft = id(&order);
    let (status, answer) = shop.act(&draft, "submit").await;
    assert_problem(status, &answer, 409, "empty_order");
    let (status, answer) = shop.act(&draft, "receive").await;
    assert_problem(status, &answer, 409, "invalid_transition");
    let (status, order) = shop
        .platform
        .call(
            Method::POST,
            &format!("/v1/purchase-orders/{draft}/lines"),
            &shop.token,
            Some(shop.line("2", "1.5")),
        )
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["total"], "3.00");
    let (status, order) = shop.act(&draft, "submit").await;
    assert_eq!((status, order["status"].as_str()), (200, Some("submitted")));
    assert!(order["submitted_at"].is_string());

    // Nothing of a submitted order's lines or fields changes any more.
    let version = order["version"].clone();
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/purchase-orders/{draft}/lines"),
            Some(shop.line("1", "1")),
        ),
        (
            Method::PUT,
            format!("/v1/purchase-orders/{draft}/lines"),
            Some(json!({ "lines": [] })),
        ),
        (
            Method::PATCH,
            format!("/v1/purchase-orders/{draft}"),
            Some(json!({ "notes": "late" })),
        ),
    ] {
        let (status, answer) = shop.platform.call(method, &path, &shop.token, body).await;
        assert_problem(status, &answer, 409, "order_not_draft");
    }
    let (status, answer) = shop.act(&draft, "submit").await;
    assert_problem(status, &answer, 409, "invalid_transition");
    let (status, order) = shop.act(&draft, "receive").await;
    assert_eq!((status, order["status"].as_str()), (200, Some("received")));
    for verb in ["cancel", "submit", "receive"] {
        let (status, answer) = shop.act(&draft, verb).await;
        assert_problem(status, &answer, 409, "invalid_transition");
    }
    let (_, after) = shop
        .platform
        .call(
            Method::GET,
            &format!("/v1/purchase-orders/{draft}"),
            &shop.token,
            None,
        )
        .await;
    assert_eq!(after["status"], "received");
    assert_eq!(after["total"], "3.00");
    assert_ne!(after["version"], version, "receiving was a change");

    // A draft may be cancelled; a cancelled order goes nowhere.
    let (_, order) = shop.order(json!([shop.line("1", "1")])).await;
    let other = id(&order);
    let (status, _) = shop.act(&other, "cancel").await;
    assert_eq!(status, 200);
    for verb in ["submit", "receive", "cancel"] {
        let (status, answer) = shop.act(&other, verb).await;
        assert_problem(status, &answer, 409, "invalid_transition");
    }

    // Without orders.approve, no transition.
    let writer = shop
        .platform
        .app
        .tenant_token(
            &shop.platform.admin,
            "acme",
            &["orders.read", "orders.write"],
        )
        .await;
    let (status, answer) = shop
        .platform
        .call(
            Method::POST,
            &format!("/v1/purchase-orders/{draft}/cancel"),
            &writer,
            None,
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("orders.approve"))
    );
}

#[tokio::test]
async fn concurrent_edits_retries_and_numbers_are_safe() {
    let shop = Shop::open(&["acme", "globex"]).await;
    let (_, order) = shop.order(json!([shop.line("1", "1")])).await;
    let order_id = id(&order);
    let tag = format!("\"{}\"", order["version"]);

    // Two clients editing with the same If-Match: one wins.
    let edits = ["first", "second"].map(|notes| {
        let shop = &shop;
        let tag = tag.clone();
        let path = format!("/v1/purchase-orders/{order_id}");
        async move {
            let response = shop
                .platform
                .router
                .client
                .patch(format!("{}{path}", shop.platform.router.base_url))
                .bearer_auth(&shop.token)
                .header("if-match", tag)
                .json(&json!({ "notes": notes }))
                .send()
                .await
                .expect("send");
            response.status().as_u16()
        }
    });
    let mut statuses = futures::future::join_all(edits).await;
    statuses.sort();
    assert_eq!(statuses, [200, 412]);

    // A lost answer retried with the same Idempotency-Key creates one order.
    let body = json!({ "supplier_id": shop.supplier, "lines": [shop.line("2", "2")] });
    let send = |key: &'static str, body: Value| {
        let shop = &shop;
        async move {
            let (status, answer) = shop
                .platform
                .send(
                    Method::POST,
                    "/v1/purchase-orders",
                    Some(&shop.token),
                    &[("idempotency-key", key)],
                    Some(body),
                )
                .await;
            (status, answer)
        }
    };
    let answers =
        futures::future::join_all([send("retry-1", body.clone()), send("retry-1", body.clone())])
            .await;
    assert_eq!(answers[0].0, 201, "{:?}", answers[0]);
    assert_eq!(answers[1].0, 201, "{:?}", answers[1]);
    assert_eq!(answers[0].1["id"], answers[1].1["id"], "one order");
    let (status, answer) = send("retry-1", json!({ "supplier_id": shop.supplier })).await;
    assert_problem(status, &answer, 422, "idempotency_key_reused");

    // The same holds for a line added and for anything else created; a key is one request.
    let created = answers[0].1.clone();
    let lines_path = format!("/v1/purchase-orders/{}/lines", id(&created));
    for _ in 0..2 {
        let (status, answer) = shop
            .platform
            .send(
                Method::POST,
                &lines_path,
                Some(&shop.token),
                &[("idempotency-key", "line-1")],
                Some(shop.line("3", "1.5")),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["lines"].as_array().map(Vec::len),
            Some(2),
            "{answer}"
        );
        assert_eq!(answer["total"], "8.50");
    }
    let mut customers = Vec::new();
    for _ in 0..2 {
        let (status, answer) = shop
            .platform
            .send(
                Method::POST,
                "/v1/suppliers",
                Some(&shop.token),
                &[("idempotency-key", "supplier-2")],
                Some(json!({ "code": "S-2", "name": "Second" })),
            )
            .await;
        assert_eq!(status, 201, "a replay, not a conflict: {answer}");
        customers.push(id(&answer));
    }
    assert_eq!(customers[0], customers[1]);
    let (status, answer) = shop
        .platform
        .send(
            Method::POST,
            "/v1/products",
            Some(&shop.token),
            &[("idempotency-key", "supplier-2")],
            Some(json!({ "sku": "P-2", "name": "Second", "unit_price": "1" })),
        )
        .await;
    assert_problem(status, &answer, 422, "idempotency_key_reused");
    let (status, answer) = shop
        .platform
        .send(
            Method::POST,
            "/v1/products",
            Some(&shop.token),
            &[("idempotency-key", &"k".repeat(201))],
            Some(json!({ "sku": "P-9", "name": "Nine", "unit_price": "1" })),
        )
        .await;
    assert_problem(status, &answer, 400, "bad_request");

    // 50 creations at once: 50 distinct, consecutive numbers.
    let (_, before) = shop
        .platform
        .call(
            Method::GET,
            "/v1/purchase-orders?limit=500",
            &shop.token,
            None,
        )
        .await;
    let existing = before["items"].as_array().expect("items").len();
    let creations = (0..50).map(|_| shop.order(json!([shop.line("1", "1")])));
    let created = futures::future::join_all(creations).await;
    let mut numbers: Vec<u64> = created
        .iter()
        .map(|(status, order)| {
            assert_eq!(*status, 201, "{order}");
            order["number"].as_str().expect("number")[3..]
                .parse()
                .expect("digits")
        })
        .collect();
    numbers.sort_unstable();
    let first = u64::try_from(existing).expect("count") + 1;
    assert_eq!(numbers, (first..first + 50).collect::<Vec<_>>());

    // Another tenant sees none of it, and cannot name this tenant's product.
    let theirs = shop
        .platform
        .app
        .tenant_token(&shop.platform.admin, "globex", ORDERS)
        .await;
    let (status, _) = shop
        .platform
        .call(
            Method::GET,
            &format!("/v1/purchase-orders/{order_id}"),
            &theirs,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, supplier) = shop
        .platform
        .call(
            Method::POST,
            "/v1/suppliers",
            &theirs,
            Some(json!({ "code": "S-1", "name": "Theirs" })),
        )
        .await;
    let (status, answer) = shop
        .platform
        .call(
            Method::POST,
            "/v1/purchase-orders",
            &theirs,
            Some(json!({ "supplier_id": id(&supplier), "lines": [shop.line("1", "1")] })),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("product_id"))
    );
}
