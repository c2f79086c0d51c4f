//! `tenantctl tenant seed`: sample data through the router's API, checked, totalled and
//! audited as an app's writes are; bad invocations refused before anything is written.

use super::*;

/// Every item of a list, following its cursors.
async fn all(platform: &Platform, token: &str, collection: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = format!("{collection}?limit=500");
    loop {
        let (status, page) = platform.call(Method::GET, &path, token, None).await;
        assert_eq!(status, 200, "{page}");
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{collection}?limit=500&cursor={cursor}"),
            None => return items,
        }
    }
}

#[tokio::test]
async fn seeding_fills_a_tenant_through_the_api() {
    let platform = Platform::start(&["acme", "globex"], &[]).await;
    let seed = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "tenant",
            "seed",
            "--tenant",
            "acme",
            "--router-url",
            &platform.router.base_url,
        ];
        args.extend_from_slice(extra);
        platform.app.tenantctl(&args, "")
    };
    let output = seed(&[
        "--customers",
        "7",
        "--suppliers",
        "3",
        "--products",
        "12",
        "--orders",
        "9",
        "--seed",
        "42",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["customers"], 7);
    assert_eq!(report["orders"], 9);

    let owner = platform.owner("acme").await;
    assert_eq!(all(&platform, &owner, "/v1/customers").await.len(), 7);
    assert_eq!(all(&platform, &owner, "/v1/suppliers").await.len(), 3);
    let products = all(&platform, &owner, "/v1/products").await;
    assert_eq!(products.len(), 12);
    assert!(
        products
            .iter()
            .all(|product| product["currency"] == "EUR" && product["unit_price"].is_string())
    );
    let orders = all(&platform, &owner, "/v1/purchase-orders").await;
    assert_eq!(orders.len(), 9);
    let mut lines = 0;
    for order in &orders {
        let (status, order) = platform
            .call(
                Method::GET,
                &format!("/v1/purchase-orders/{}", id(order)),
                &owner,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let order_lines = order["lines"].as_array().expect("lines");
        assert!((1..=20).contains(&order_lines.len()), "{order}");
        lines += order_lines.len();
        assert!(
            ["draft", "submitted", "received", "cancelled"]
                .contains(&order["status"].as_str().expect("status"))
        );
    }
    assert_eq!(report["order_lines"], lines);
    // Written as an app writes: every creation is in the tenant's audit log.
    let audit = platform.audit_log(&owner).await;
    let created = |action: &str| {
        audit
            .iter()
            .filter(|entry| entry["action"] == action)
            .count()
    };
    assert_eq!(created("customer.create"), 7);
    assert_eq!(created("order.create"), 9);
    // The other tenant got nothing.
    let theirs = platform.owner("globex").await;
    assert!(all(&platform, &theirs, "/v1/customers").await.is_empty());

    // Seeding again adds a new set, never colliding with the first.
    let output = seed(&[
        "--customers",
        "2",
        "--suppliers",
        "0",
        "--products",
        "0",
        "--orders",
        "0",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(all(&platform, &owner, "/v1/customers").await.len(), 9);

    // Bad invocations are refused before anything is written.
    for (extra, says) in [
        (
            &["--orders", "2", "--products", "0"][..],
            "orders need suppliers and products",
        ),
        (&["--customers", "100001"][..], "100001"),
        (&["--concurrency", "0"][..], "concurrency"),
    ] {
        let output = seed(extra);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
    let output = platform.app.tenantctl(
        &[
            "tenant",
            "seed",
            "--tenant",
            "no-such-tenant",
            "--router-url",
            &platform.router.base_url,
        ],
        "",
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no-such-tenant"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(all(&platform, &owner, "/v1/customers").await.len(), 9);
}
