//! A whole session: the first admin signs in, makes a role and a user holding it; the user
//! can do exactly what the role allows on every route; a permission removed applies to
//! the user's very next request; every write is audited once, with who, where and what.

use std::time::{Duration, Instant};

use super::events::EventsClient;
use super::*;

/// An id nothing has: the permission is refused before anything is looked up.
const NOBODY: &str = "00000000-0000-4000-8000-000000000000";

/// Every tenant-user route: method, path, body, the permission it needs (None: any
/// signed-in user).
fn routes(
    user: &str,
    role: &str,
    customer: &str,
) -> Vec<(Method, String, Option<Value>, Option<&'static str>)> {
    vec![
        (Method::GET, "/v1/auth/me".into(), None, None),
        (Method::GET, "/v1/users".into(), None, Some("users.read")),
        (
            Method::GET,
            format!("/v1/users/{user}"),
            None,
            Some("users.read"),
        ),
        (
            Method::POST,
            "/v1/users".into(),
            Some(json!({ "email": "someone@acme.example", "password": "another long password" })),
            Some("users.write"),
        ),
        (
            Method::PATCH,
            format!("/v1/users/{user}"),
            Some(json!({ "display_name": "Clerk" })),
            Some("users.write"),
        ),
        (
            Method::POST,
            format!("/v1/users/{user}/roles"),
            Some(json!({ "roles": [role] })),
            Some("users.write"),
        ),
        (Method::GET, "/v1/roles".into(), None, Some("roles.read")),
        (
            Method::GET,
            format!("/v1/roles/{role}"),
            None,
            Some("roles.read"),
        ),
        (
            Method::GET,
            "/v1/permissions".into(),
            None,
            Some("roles.read"),
        ),
        (
            Method::POST,
            "/v1/roles".into(),
            Some(json!({ "name": "another" })),
            Some("roles.write"),
        ),
        (
            Method::PATCH,
            format!("/v1/roles/{role}"),
            Some(json!({ "description": "changed" })),
            Some("roles.write"),
        ),
        (
            Method::PUT,
            format!("/v1/roles/{role}/permissions"),
            Some(json!({ "permissions": ["customers.read", "customers.write", "users.read"] })),
            Some("roles.write"),
        ),
        (
            Method::GET,
            "/v1/customers".into(),
            None,
            Some("customers.read"),
        ),
        (
            Method::GET,
            format!("/v1/customers/{customer}"),
            None,
            Some("customers.read"),
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            Some(json!({ "code": "C-2", "name": "Second" })),
            Some("customers.write"),
        ),
        (
            Method::PATCH,
            format!("/v1/customers/{customer}"),
            Some(json!({ "name": "Renamed" })),
            Some("customers.write"),
        ),
        (
            Method::GET,
            "/v1/suppliers".into(),
            None,
            Some("suppliers.read"),
        ),
        (
            Method::POST,
            "/v1/suppliers".into(),
            Some(json!({ "code": "S-1", "name": "Supplier" })),
            Some("suppliers.write"),
        ),
        (
            Method::GET,
            format!("/v1/suppliers/{NOBODY}"),
            None,
            Some("suppliers.read"),
        ),
        (
            Method::PATCH,
            format!("/v1/suppliers/{NOBODY}"),
            Some(json!({ "name": "x" })),
            Some("suppliers.write"),
        ),
        (
            Method::DELETE,
            format!("/v1/suppliers/{NOBODY}"),
            None,
            Some("suppliers.write"),
        ),
        (
            Method::GET,
            "/v1/products".into(),
            None,
            Some("products.read"),
        ),
        (
            Method::POST,
            "/v1/products".into(),
            Some(json!({ "sku": "P-1", "name": "Product", "unit_price": "1.00" })),
            Some("products.write"),
        ),
        (
            Method::GET,
            format!("/v1/products/{NOBODY}"),
            None,
            Some("products.read"),
        ),
        (
            Method::PATCH,
            format!("/v1/products/{NOBODY}"),
            Some(json!({ "name": "x" })),
            Some("products.write"),
        ),
        (
            Method::DELETE,
            format!("/v1/products/{NOBODY}"),
            None,
            Some("products.write"),
        ),
        (
            Method::GET,
            "/v1/purchase-orders".into(),
            None,
            Some("orders.read"),
        ),
        (
            Method::POST,
            "/v1/purchase-orders".into(),
            Some(json!({ "supplier_id": NOBODY })),
            Some("orders.write"),
        ),
        (
            Method::GET,
            format!("/v1/purchase-orders/{NOBODY}"),
            None,
            Some("orders.read"),
        ),
        (
            Method::PATCH,
            format!("/v1/purchase-orders/{NOBODY}"),
            Some(json!({ "notes": "x" })),
            Some("orders.write"),
        ),
        (
            Method::POST,
            format!("/v1/purchase-orders/{NOBODY}/lines"),
            Some(json!({ "product_id": NOBODY, "quantity": "1" })),
            Some("orders.write"),
        ),
        (
            Method::PUT,
            format!("/v1/purchase-orders/{NOBODY}/lines"),
            Some(json!({ "lines": [] })),
            Some("orders.write"),
        ),
        (
            Method::POST,
            format!("/v1/purchase-orders/{NOBODY}/submit"),
            None,
            Some("orders.approve"),
        ),
        (
            Method::POST,
            format!("/v1/purchase-orders/{NOBODY}/receive"),
            None,
            Some("orders.approve"),
        ),
        (
            Method::POST,
            format!("/v1/purchase-orders/{NOBODY}/cancel"),
            None,
            Some("orders.approve"),
        ),
        (
            Method::GET,
            "/v1/audit-log".into(),
            None,
            Some("audit.read"),
        ),
        (
            Method::DELETE,
            format!("/v1/roles/{role}"),
            None,
            Some("roles.write"),
        ),
        (
            Method::DELETE,
            format!("/v1/users/{user}"),
            None,
            Some("users.write"),
        ),
        (
            Method::DELETE,
            format!("/v1/customers/{customer}"),
            None,
            Some("customers.write"),
        ),
    ]
}

#[tokio::test]
async fn a_user_can_do_exactly_what_its_role_allows_and_a_change_applies_at_once() {
    let platform = Platform::start(&["acme"], &[]).await;
    let owner = platform.owner("acme").await;
    let (status, me) = platform
        .call(Method::GET, "/v1/auth/me", &owner, None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["kind"], "user");
    assert_eq!(me["user"]["email"], "owner@acme.example");
    assert_eq!(me["user"]["roles"][0]["name"], "admin");
    let all = me["permissions"].as_array().expect("permissions").len();
    let (_, catalogue) = platform
        .call(Method::GET, "/v1/permissions", &owner, None)
        .await;
    assert_eq!(
        all,
        catalogue["items"].as_array().expect("items").len(),
        "the admin holds every permission"
    );

    let granted = ["customers.read", "customers.write", "users.read"];
    let role = platform.role(&owner, "clerk", &granted).await;
    let clerk = platform
        .user(
            &owner,
            "clerk@acme.example",
            "the clerk's own password",
            &[&role],
        )
        .await;
    let (status, customer) = platform
        .call(
            Method::POST,
            "/v1/customers",
            &owner,
            Some(json!({ "code": "C-1", "name": "First" })),
        )
        .await;
    assert_eq!(status, 201, "{customer}");
    let customer = id(&customer);

    let tokens = platform
        .sign_in("acme", "clerk@acme.example", "the clerk's own password")
        .await;
    let token = access(&tokens);
    let (_, me) = platform
        .call(Method::GET, "/v1/auth/me", &token, None)
        .await;
    assert_eq!(me["permissions"], json!(granted));

    for (method, path, body, permission) in routes(&clerk, &role, &customer) {
        let route = format!("{method} {path}");
        let (status, answer) = platform.call(method, &path, &token, body).await;
        match permission {
            Some(permission) if !granted.contains(&permission) => {
                assert_forbidden(status, &answer, permission, &route);
            }
            _ => assert!((200..300).contains(&status), "{route}: {status} {answer}"),
        }
    }

    // The admin takes `customers.write` away: the clerk's very next write is refused, and
    // its connected events client hears of it within a second.
    let mut events = EventsClient::open(&platform, "", Some(&token), None)
        .await
        .expect("the clerk listens");
    let started = Instant::now();
    let (status, body) = platform
        .call(
            Method::PUT,
            &format!("/v1/roles/{role}/permissions"),
            &owner,
            Some(json!({ "permissions": ["customers.read", "users.read"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = platform
        .call(
            Method::POST,
            "/v1/customers",
            &token,
            Some(json!({ "code": "C-3", "name": "Third" })),
        )
        .await;
    assert_forbidden(status, &body, "customers.write", "after the change");
    let event = events
        .next_of("role.permissions_changed", Duration::from_secs(5))
        .await;
    assert_eq!(event.data["role_id"], role.as_str());
    let took = event.at.duration_since(started);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (status, _) = platform
        .call(Method::GET, "/v1/customers", &token, None)
        .await;
    assert_eq!(status, 200, "reading is still allowed");

    // Every write appears once, with before/after, the client's address and user agent.
    let log = platform.audit_log(&owner).await;
    let actions: Vec<&str> = log
        .iter()
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "auth.login",
            "role.create",
            "user.create",
            "customer.create",
            "auth.login",
            "customer.create",
            "customer.update",
            "customer.delete",
            "role.permissions",
        ],
        "{log:#?}"
    );
    for entry in &log {
        assert_eq!(entry["client_ip"], "127.0.0.1", "{entry}");
        assert_eq!(entry["user_agent"], USER_AGENT, "{entry}");
        assert!(entry["request_id"].is_string(), "{entry}");
        assert!(
            entry["actor"]
                .as_str()
                .is_some_and(|actor| actor.starts_with("user:"))
        );
    }
    let change = log.last().expect("the permission change");
    assert_eq!(change["entity_id"], role.as_str());
    assert_eq!(change["before"]["permissions"], json!(granted));
    assert_eq!(
        change["after"]["permissions"],
        json!(["customers.read", "users.read"])
    );
    let created = &log[2];
    assert_eq!(created["after"]["email"], "clerk@acme.example");
    assert!(created["before"].is_null());
    assert!(
        !created.to_string().contains("argon2"),
        "no password hash in the log: {created}"
    );
    assert_eq!(
        log[5]["actor"],
        format!("user:{clerk}"),
        "the clerk's own write"
    );

    // The audit log can be filtered.
    let (status, mine) = platform
        .call(
            Method::GET,
            &format!("/v1/audit-log?actor=user:{clerk}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(mine["items"].as_array().expect("items").len(), 4, "{mine}");
}

#[tokio::test]
async fn the_plan_caps_users_even_under_parallel_creates_and_the_last_admin_stays() {
    let platform = Platform::start(&[], &[]).await;
    let app = &platform.app;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/plans",
            Some(&platform.admin),
            Some(json!({
                "name": "tiny",
                "display_name": "Tiny",
                "limits": {
                    "max_users": 4, "max_storage_mb": 100, "requests_per_minute": 6000,
                    "max_connections": 5, "statement_timeout_ms": 5000, "backup_retention_days": 7
                }
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&platform.admin),
            Some(json!({
                "slug": "tiny-co", "name": "Tiny Co", "plan": "tiny",
                "admin_email": "owner@tiny-co.example", "admin_password": ADMIN_PASSWORD,
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let owner = platform.owner("tiny-co").await;

    let attempts = (0..20).map(|n| {
        let platform = &platform;
        let owner = owner.clone();
        async move {
            platform
                .call(
                    Method::POST,
                    "/v1/users",
                    &owner,
                    Some(json!({ "email": format!("user{n}@tiny-co.example"), "password": "a password for everyone" })),
                )
                .await
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(
        created, 3,
        "4 users at most, the owner included: {answers:?}"
    );
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_problem(*status, body, 403, "limit_exceeded");
    }
    let (_, users) = platform.call(Method::GET, "/v1/users", &owner, None).await;
    assert_eq!(users["items"].as_array().expect("items").len(), 4);

    // The last active admin can be neither demoted, disabled nor deleted.
    let (_, me) = platform
        .call(Method::GET, "/v1/auth/me", &owner, None)
        .await;
    let me = me["user"]["id"].as_str().expect("id").to_owned();
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/users/{me}/roles"),
            Some(json!({ "roles": [] })),
        ),
        (
            Method::PATCH,
            format!("/v1/users/{me}"),
            Some(json!({ "is_active": false })),
        ),
        (Method::DELETE, format!("/v1/users/{me}"), None),
    ] {
        let (status, answer) = platform.call(method.clone(), &path, &owner, body).await;
        assert_problem(status, &answer, 409, "last_admin");
    }
    let (status, _) = platform
        .call(Method::GET, "/v1/auth/me", &owner, None)
        .await;
    assert_eq!(status, 200, "still signed in, still an admin");
    // Nor can the system role be stripped.
    let (_, roles) = platform.call(Method::GET, "/v1/roles", &owner, None).await;
    let admin_role = roles["items"][0]["id"]
        .as_str()
        .expect("the admin role")
        .to_owned();
    let (status, answer) = platform
        .call(
            Method::PUT,
            &format!("/v1/roles/{admin_role}/permissions"),
            &owner,
            Some(json!({ "permissions": [] })),
        )
        .await;
    assert_problem(status, &answer, 409, "system_role");
}
