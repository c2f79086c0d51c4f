//! Customers, suppliers and products: CRUD, exact money as strings, versions with `ETag`
//! and `If-Match`, conflicts naming the field, `in_use`, sorted lists with tamper-evident
//! cursors, bad input, isolation.

use super::*;

const RESOURCES: &[&str] = &[
    "customers.read",
    "customers.write",
    "suppliers.read",
    "suppliers.write",
    "products.read",
    "products.write",
];

/// `ETag` of a response, with its status and body.
async fn send_with_etag(
    platform: &Platform,
    method: Method,
    path: &str,
    token: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut request = platform
        .router
        .client
        .request(
            method.clone(),
            format!("{}{path}", platform.router.base_url),
        )
        .bearer_auth(token);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    if let Some(body) = &body {
        request = request.json(body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|value| value.to_str().expect("text").to_owned());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    platform.assert_conforms(&method, path, status, content_type.as_deref(), &text);
    if let Some(body) = &body
        && (200..300).contains(&status)
    {
        platform.assert_request_documented(&method, path, body);
    }
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn suppliers_and_products_round_trip_with_exact_money_versions_and_conflicts() {
    let platform = Platform::start(&["acme", "globex"], &[]).await;
    let token = platform
        .app
        .tenant_token(&platform.admin, "acme", RESOURCES)
        .await;
    let other = platform
        .app
        .tenant_token(&platform.admin, "globex", RESOURCES)
        .await;

    // Money is a string both ways, exact, shown with at least two places.
    let (status, etag, product) = send_with_etag(
        &platform,
        Method::POST,
        "/v1/products",
        &token,
        None,
        Some(json!({ "sku": "P-1", "name": "Bolt", "unit_price": "10.3", "currency": "USD" })),
    )
    .await;
    assert_eq!(status, 201, "{product}");
    assert_eq!(product["unit_price"], "10.30");
    assert_eq!(product["currency"], "USD");
    assert_eq!(product["unit"], "each", "the default");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let product_id = id(&product);
    // Every answer in these tests is held to its OpenAPI schema; the check has teeth.
    let mut broken = product.clone();
    broken["unit_price"] = json!(10.3);
    broken["colour"] = json!("red");
    broken.as_object_mut().expect("an object").remove("sku");
    let json = Some("application/json");
    let problems = platform.nonconformities(
        &Method::POST,
        "/v1/products",
        201,
        json,
        &broken.to_string(),
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        !platform
            .nonconformities(
                &Method::DELETE,
                &format!("/v1/products/{product_id}"),
                204,
                json,
                "{}"
            )
            .is_empty(),
        "a body where the document has none"
    );

    // A stale If-Match is refused and changes nothing; the current one works.
    let path = format!("/v1/products/{product_id}");
    let (status, etag, changed) = send_with_etag(
        &platform,
        Method::PATCH,
        &path,
        &token,
        Some("\"1\""),
        Some(json!({ "unit_price": "99.999" })),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["unit_price"], "99.999");
    assert_eq!(changed["version"], 2);
    assert_eq!(etag.as_deref(), Some("\"2\""));
    let (status, _, answer) = send_with_etag(
        &platform,
        Method::PATCH,
        &path,
        &token,
        Some("\"1\""),
        Some(json!({ "name": "Stale" })),
    )
    .await;
    assert_problem(status, &answer, 412, "precondition_failed");
    let (_, _, current) = send_with_etag(&platform, Method::GET, &path, &token, None, None).await;
    assert_eq!(current["name"], "Bolt", "nothing changed");

    // Two clients with the same If-Match: one wins, one is told.
    let edits = ["First", "Second"].map(|name| {
        let platform = &platform;
        let token = token.clone();
        let path = path.clone();
        async move {
            send_with_etag(
                platform,
                Method::PATCH,
                &path,
                &token,
                Some("\"2\""),
                Some(json!({ "name": name })),
            )
            .await
            .0
        }
    });
    let mut statuses = futures::future::join_all(edits).await;
    statuses.sort();
    assert_eq!(statuses, [200, 412]);

    // Codes are unique per tenant; the conflict names the field.
    let (status, _, answer) = send_with_etag(
        &platform,
        Method::POST,
        "/v1/products",
        &token,
        None,
        Some(json!({ "sku": "P-1", "name": "Again", "unit_price": "1" })),
    )
    .await;
    assert_problem(status, &answer, 409, "conflict");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|detail| detail.starts_with("sku"))
    );
    let (status, _, _) = send_with_etag(
        &platform,
        Method::POST,
        "/v1/products",
        &other,
        None,
        Some(json!({ "sku": "P-1", "name": "Theirs", "unit_price": "1" })),
    )
    .await;
    assert_eq!(
        status, 201,
        "the same sku in another tenant is another product"
    );

    // Bad input: 422 naming the field, never a 500.
    for (body, field) in [
        (
            json!({ "sku": "P-2", "name": "x", "unit_price": 10.3 }),
            "unit_price",
        ),
        (
            json!({ "sku": "P-2", "name": "x", "unit_price": "-1" }),
            "unit_price",
        ),
        (
            json!({ "sku": "P-2", "name": "x", "unit_price": "1.23456" }),
            "unit_price",
        ),
        (
            json!({ "sku": "P-2", "name": "x", "unit_price": "1", "currency": "XXX" }),
            "currency",
        ),
        (
            json!({ "sku": "P-2", "name": "x".repeat(10_000), "unit_price": "1" }),
            "name",
        ),
        (
            json!({ "sku": "P\u{0}2", "name": "x", "unit_price": "1" }),
            "sku",
        ),
        (json!({ "sku": "P-2", "name": "x" }), "unit_price"),
        (
            json!({ "sku": "P-2", "name": "x", "unit_price": "1", "color": "red" }),
            "color",
        ),
    ] {
        let (status, _, answer) = send_with_etag(
            &platform,
            Method::POST,
            "/v1/products",
            &token,
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(field)),
            "names `{field}`: {answer}"
        );
    }
    let (status, _, created) = send_with_etag(
        &platform,
        Method::POST,
        "/v1/suppliers",
        &token,
        Some("*"),
        Some(json!({ "code": "S-1", "name": "Robert'); DROP TABLE suppliers;--" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "Robert'); DROP TABLE suppliers;--");
    let supplier_id = id(&created);

    // Another tenant's ids are not there.
    for path in [
        format!("/v1/products/{product_id}"),
        format!("/v1/suppliers/{supplier_id}"),
    ] {
        for method in [Method::GET, Method::DELETE] {
            let (status, _, answer) =
                send_with_etag(&platform, method, &path, &other, None, None).await;
            assert_eq!(status, 404, "{path}: {answer}");
        }
    }

    // Something a purchase order uses cannot be deleted.
    let (_, tenant) = platform
        .app
        .call(Method::GET, "/v1/tenants/acme", Some(&platform.admin), None)
        .await;
    let database = tenant["database_name"]
        .as_str()
        .expect("database")
        .to_owned();
    let mut superuser =
        tenancy_tests::connect(&platform.app.postgres.server.superuser_url(&database)).await;
    // The tenant's triggers name their tables as the tenant's role sees them.
    sqlx::query("SET search_path = app")
        .execute(&mut superuser)
        .await
        .expect("search path");
    sqlx::query(
        "WITH o AS (INSERT INTO app.purchase_orders (supplier_id) VALUES ($1::uuid) RETURNING id) \
         INSERT INTO app.purchase_order_lines (order_id, line_no, product_id, quantity, unit_price) \
         SELECT o.id, 1, $2::uuid, 1, 1 FROM o",
    )
    .bind(&supplier_id)
    .bind(&product_id)
    .execute(&mut superuser)
    .await
    .expect("an order");
    for path in [
        format!("/v1/products/{product_id}"),
        format!("/v1/suppliers/{supplier_id}"),
    ] {
        let (status, _, answer) =
            send_with_etag(&platform, Method::DELETE, &path, &token, None, None).await;
        assert_problem(status, &answer, 409, "in_use");
    }
    let (status, _, _) = send_with_etag(
        &platform,
        Method::DELETE,
        &format!("/v1/customers/{}", "00000000-0000-4000-8000-000000000000"),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn lists_sort_page_and_refuse_forged_cursors() {
    let platform = Platform::start(&["acme"], &[]).await;
    let token = platform
        .app
        .tenant_token(&platform.admin, "acme", RESOURCES)
        .await;
    let names = ["delta", "alpha", "echo", "charlie", "bravo"];
    for (n, name) in names.iter().enumerate() {
        let (status, body) = platform
            .call(
                Method::POST,
                "/v1/suppliers",
                &token,
                Some(json!({ "code": format!("S-{n}"), "name": name })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/suppliers?sort=-name&limit=2&cursor={cursor}"),
            None => "/v1/suppliers?sort=-name&limit=2".to_owned(),
        };
        let (status, page) = platform.call(Method::GET, &path, &token, None).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["name"].as_str().expect("name").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["echo", "delta", "charlie", "bravo", "alpha"]);

    let (_, page) = platform
        .call(Method::GET, "/v1/suppliers?sort=name&limit=2", &token, None)
        .await;
    let cursor = page["next_cursor"].as_str().expect("a cursor").to_owned();
    // The cursor works for its own list and sort only, and cannot be edited.
    for path in [
        format!("/v1/suppliers?sort=code&limit=2&cursor={cursor}"),
        format!("/v1/customers?sort=name&limit=2&cursor={cursor}"),
        format!("/v1/suppliers?sort=name&limit=2&cursor=x{cursor}"),
        "/v1/suppliers?sort=tax_id".to_owned(),
        "/v1/suppliers?limit=0".to_owned(),
    ] {
        let (status, answer) = platform.call(Method::GET, &path, &token, None).await;
        assert_problem(status, &answer, 400, "bad_request");
    }
    // A search matches name or code: anywhere from three characters, else at the start;
    // LIKE's metacharacters are only characters.
    for (q, expected) in [
        ("CHAR", &["charlie"][..]),
        ("rav", &["bravo"]),
        ("LT", &[]),
        ("ec", &["echo"]),
        ("s-3", &["charlie"]),
        ("%", &[]),
        ("a_p", &[]),
        ("'; DROP TABLE suppliers; --", &[]),
    ] {
        let path = format!("/v1/suppliers?sort=name&q={}", urlencode(q));
        let (status, found) = platform.call(Method::GET, &path, &token, None).await;
        assert_eq!(status, 200, "{found}");
        let names: Vec<&str> = found["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, expected, "q={q}");
    }

    // With thousands of rows, a search is answered from the search indexes, not a scan.
    let (_, tenant) = platform
        .app
        .call(Method::GET, "/v1/tenants/acme", Some(&platform.admin), None)
        .await;
    let database = tenant["database_name"].as_str().expect("database");
    let mut superuser =
        tenancy_tests::connect(&platform.app.postgres.server.superuser_url(database)).await;
    sqlx::query(
        "INSERT INTO app.suppliers (code, name) \
         SELECT 'B-' || n, 'bulk supplier ' || md5(n::text) FROM generate_series(1, 5000) n",
    )
    .execute(&mut superuser)
    .await
    .expect("bulk suppliers");
    sqlx::query("ANALYZE app.suppliers")
        .execute(&mut superuser)
        .await
        .expect("analyze");
    let scans = async |superuser: &mut sqlx::PgConnection| -> i64 {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut *superuser)
            .await
            .expect("fresh statistics");
        sqlx::query_scalar(
            "SELECT sum(idx_scan)::bigint FROM pg_stat_user_indexes \
             WHERE indexrelname IN ('suppliers_name_search_idx', 'suppliers_code_search_idx')",
        )
        .fetch_one(&mut *superuser)
        .await
        .expect("index statistics")
    };
    let before = scans(&mut superuser).await;

    let (status, found) = platform
        .call(Method::GET, "/v1/suppliers?q=harli", &token, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["name"], "charlie");
    // A backend that reported its statistics within the last second reports them again
    // after 10 s idle, so this waits up to 20 s.
    let mut after = before;
    for _ in 0..200 {
        after = scans(&mut superuser).await;
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    assert!(after > before, "the search used the search indexes");
}

/// `text` for a query string.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
