//! Two tenants: nothing of one is reachable with the other's tokens.

use super::*;

#[tokio::test]
async fn no_user_role_or_audit_entry_of_one_tenant_is_reachable_from_another() {
    let platform = Platform::start(
        &["acme", "globex"],
        &[("TENANCY_ROUTER_BASE_DOMAIN", "example.test")],
    )
    .await;
    let acme = platform.owner("acme").await;
    let globex = platform.owner("globex").await;
    let role = platform.role(&acme, "acme-only", &["customers.read"]).await;
    let user = platform
        .user(
            &acme,
            "someone@acme.example",
            "someone's own password",
            &[&role],
        )
        .await;

    for (method, path, body) in [
        (Method::GET, format!("/v1/users/{user}"), None),
        (
            Method::PATCH,
            format!("/v1/users/{user}"),
            Some(json!({ "display_name": "x" })),
        ),
        (Method::DELETE, format!("/v1/users/{user}"), None),
        (
            Method::POST,
            format!("/v1/users/{user}/roles"),
            Some(json!({ "roles": [] })),
        ),
        (Method::GET, format!("/v1/roles/{role}"), None),
        (
            Method::PATCH,
            format!("/v1/roles/{role}"),
            Some(json!({ "name": "x" })),
        ),
        (Method::DELETE, format!("/v1/roles/{role}"), None),
        (
            Method::PUT,
            format!("/v1/roles/{role}/permissions"),
            Some(json!({ "permissions": [] })),
        ),
    ] {
        let route = format!("{method} {path}");
        let (status, answer) = platform.call(method, &path, &globex, body).await;
        assert_eq!(status, 404, "{route}: {answer}");
    }
    // A user id of one tenant given as a role of another is no such role.
    let (_, me) = platform
        .call(Method::GET, "/v1/auth/me", &globex, None)
        .await;
    let globex_owner = me["user"]["id"].as_str().expect("id").to_owned();
    let (status, answer) = platform
        .call(
            Method::POST,
            &format!("/v1/users/{globex_owner}/roles"),
            &globex,
            Some(json!({ "roles": [role] })),
        )
        .await;
    assert_problem(status, &answer, 422, "validation_failed");
    let (_, log) = platform
        .call(
            Method::GET,
            &format!("/v1/audit-log?entity_id={user}"),
            &globex,
            None,
        )
        .await;
    assert_eq!(log["items"], json!([]), "{log}");
    let (_, users) = platform.call(Method::GET, "/v1/users", &globex, None).await;
    assert_eq!(users["items"].as_array().expect("items").len(), 1);

    // The users' and the audit log's cursors page through their own list only, and cannot
    // be edited.
    let mut emails = Vec::new();
    let mut path = "/v1/users?limit=1".to_owned();
    let mut users_cursor = String::new();
    loop {
        let (status, page) = platform.call(Method::GET, &path, &acme, None).await;
        assert_eq!(status, 200, "{page}");
        emails.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                users_cursor = cursor.to_owned();
                path = format!("/v1/users?limit=1&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(emails.len(), 2, "{emails:?}");
    let (_, log) = platform
        .call(Method::GET, "/v1/audit-log?limit=1", &acme, None)
        .await;
    let audit_cursor = log["next_cursor"].as_str().expect("a cursor").to_owned();
    for path in [
        format!("/v1/audit-log?cursor={users_cursor}"),
        format!("/v1/users?cursor={audit_cursor}"),
        format!("/v1/users?cursor=A{users_cursor}"),
        format!("/v1/audit-log?cursor={}", &audit_cursor[1..]),
        "/v1/users?cursor=MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHwwMDAw".to_owned(),
    ] {
        let (status, answer) = platform.call(Method::GET, &path, &acme, None).await;
        assert_problem(status, &answer, 400, "bad_request");
    }

    // Naming tenant B with tenant A's credentials fails.
    let (status, answer) = platform
        .send(
            Method::GET,
            "/v1/users",
            Some(&acme),
            &[("x-tenant", "globex")],
            None,
        )
        .await;
    assert_problem(status, &answer, 403, "tenant_mismatch");
    let (status, answer) = platform
        .login("globex", "someone@acme.example", "someone's own password")
        .await;
    assert_problem(status, &answer, 401, "invalid_credentials");
    // The host may name the tenant, under the base domain.
    let (status, answer) = platform
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            &[("host", "acme.example.test")],
            Some(json!({ "email": "owner@acme.example", "password": ADMIN_PASSWORD })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = platform
        .send(
            Method::GET,
            "/v1/users",
            Some(&acme),
            &[("host", "globex.example.test")],
            None,
        )
        .await;
    assert_problem(status, &answer, 403, "tenant_mismatch");
    let (status, answer) = platform
        .login("no-such-co", "owner@acme.example", ADMIN_PASSWORD)
        .await;
    assert_problem(status, &answer, 401, "invalid_credentials");

    // Input: SQL metacharacters are data; too long, NUL and wrong types are 422 naming the field.
    let (status, created) = platform
        .call(
            Method::POST,
            "/v1/roles",
            &acme,
            Some(json!({ "name": "x'); DROP TABLE users; --" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "x'); DROP TABLE users; --");
    for (body, field) in [
        (json!({ "name": "n".repeat(101) }), "name"),
        (json!({ "name": "a\u{0}b" }), "name"),
        (json!({ "name": 42 }), "name"),
        (
            json!({ "name": "ok", "permissions": ["no.such"] }),
            "permissions",
        ),
    ] {
        let (status, answer) = platform
            .call(Method::POST, "/v1/roles", &acme, Some(body))
            .await;
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
            json!({ "email": "not-an-email", "password": "a long enough password" }),
            "email",
        ),
        (
            json!({ "email": "short@acme.example", "password": "short" }),
            "password",
        ),
        (
            json!({ "email": "same@acme.example", "password": "same@acme.example" }),
            "password",
        ),
        (
            json!({ "email": "common@acme.example", "password": "password1234" }),
            "password",
        ),
    ] {
        let (status, answer) = platform
            .call(Method::POST, "/v1/users", &acme, Some(body))
            .await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(field)),
            "names `{field}`: {answer}"
        );
    }
}

#[tokio::test]
async fn no_customer_supplier_product_or_order_of_one_tenant_is_reachable_from_another() {
    let platform = Platform::start(&["acme", "globex"], &[]).await;
    let acme = platform.owner("acme").await;
    let globex = platform.owner("globex").await;
    let mut ids = Vec::new();
    for (path, body) in [
        (
            "/v1/customers",
            json!({ "code": "C-1", "name": "Customer" }),
        ),
        (
            "/v1/suppliers",
            json!({ "code": "S-1", "name": "Supplier" }),
        ),
        (
            "/v1/products",
            json!({ "sku": "P-1", "name": "Bolt", "unit_price": "1.00" }),
        ),
    ] {
        let (status, created) = platform.call(Method::POST, path, &acme, Some(body)).await;
        assert_eq!(status, 201, "{created}");
        ids.push((path, id(&created)));
    }
    let (supplier, product) = (ids[1].1.clone(), ids[2].1.clone());
    let line = json!({ "product_id": product, "quantity": "1" });
    let (status, order) = platform
        .call(
            Method::POST,
            "/v1/purchase-orders",
            &acme,
            Some(json!({ "supplier_id": supplier, "lines": [line] })),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let order = id(&order);

    let mut requests = Vec::new();
    for (collection, item) in &ids {
        let path = format!("{collection}/{item}");
        requests.push((Method::GET, path.clone(), None));
        requests.push((Method::PATCH, path.clone(), Some(json!({ "name": "x" }))));
        requests.push((Method::DELETE, path, None));
    }
    let order_path = format!("/v1/purchase-orders/{order}");
    requests.push((Method::GET, order_path.clone(), None));
    requests.push((
        Method::PATCH,
        order_path.clone(),
        Some(json!({ "notes": "x" })),
    ));
    requests.push((
        Method::POST,
        format!("{order_path}/lines"),
        Some(line.clone()),
    ));
    requests.push((
        Method::PUT,
        format!("{order_path}/lines"),
        Some(json!({ "lines": [] })),
    ));
    for verb in ["submit", "receive", "cancel"] {
        requests.push((Method::POST, format!("{order_path}/{verb}"), None));
    }
    for (method, path, body) in requests {
        let route = format!("{method} {path}");
        let (status, answer) = platform.call(method, &path, &globex, body).await;
        assert_eq!(status, 404, "{route}: {answer}");
    }

    // Named in a body, another tenant's ids do not exist either: 422 naming the field.
    let (_, theirs) = platform
        .call(
            Method::POST,
            "/v1/suppliers",
            &globex,
            Some(json!({ "code": "S-1", "name": "Theirs" })),
        )
        .await;
    for (body, field) in [
        (
            json!({ "supplier_id": supplier, "lines": [] }),
            "supplier_id",
        ),
        (
            json!({ "supplier_id": id(&theirs), "lines": [line] }),
            "product_id",
        ),
    ] {
        let (status, answer) = platform
            .call(Method::POST, "/v1/purchase-orders", &globex, Some(body))
            .await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(field)),
            "names {field}: {answer}"
        );
    }
    // And nothing of acme's changed.
    for (collection, item) in &ids {
        let (status, body) = platform
            .call(Method::GET, &format!("{collection}/{item}"), &acme, None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["version"], 1, "{body}");
    }
    let (_, body) = platform.call(Method::GET, &order_path, &acme, None).await;
    assert_eq!(body["status"], "draft");
    assert_eq!(body["lines"].as_array().map(Vec::len), Some(1));
}
