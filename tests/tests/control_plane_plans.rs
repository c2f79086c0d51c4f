//! Plans and the audit log on the real control-plane binary.

use reqwest::Method;
use serde_json::{Value, json};
use tenancy_tests::{ADMIN_EMAIL, ControlPlane, assert_problem};

fn gold() -> Value {
    json!({
        "name": "gold",
        "display_name": "Gold",
        "limits": {
            "max_users": 200, "max_storage_mb": 20480, "requests_per_minute": 12000,
            "max_connections": 15, "statement_timeout_ms": 20000, "backup_retention_days": 45
        }
    })
}

async fn audit_entries(app: &ControlPlane, token: &str) -> Vec<Value> {
    let (status, body) = app
        .call(Method::GET, "/v1/audit-log?limit=500", Some(token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn seeded_plans_carry_the_limits_of_the_spec() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    let (status, body) = app.call(Method::GET, "/v1/plans", Some(&token), None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|plan| plan["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["enterprise", "standard", "trial"]);
    for plan in body["items"].as_array().expect("items") {
        for limit in [
            "max_users",
            "max_storage_mb",
            "requests_per_minute",
            "max_connections",
            "statement_timeout_ms",
            "backup_retention_days",
        ] {
            assert!(
                plan["limits"][limit].as_i64().expect("a number") > 0,
                "{plan}"
            );
        }
    }
    let trial = &body["items"][2];
    assert_eq!(
        trial["limits"]["trial_days"], 14,
        "only the trial plan has trial days"
    );
    assert!(body["items"][0]["limits"]["trial_days"].is_null());
    // Backups: enterprise every 6 hours, the others daily.
    assert_eq!(body["items"][0]["limits"]["backup_interval_hours"], 6);
    assert_eq!(body["items"][1]["limits"]["backup_interval_hours"], 24);
}

#[tokio::test]
async fn create_list_patch_and_every_write_is_audited() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;

    let response = app
        .client
        .post(app.url("/v1/plans"))
        .bearer_auth(&token)
        .json(&gold())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/v1/plans/gold");
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["limits"]["max_connections"], 15);
    assert_eq!(
        created["limits"]["backup_interval_hours"], 24,
        "the default"
    );
    assert!(created["limits"]["trial_days"].is_null());

    let (status, body) = app
        .call(Method::POST, "/v1/plans", Some(&token), Some(gold()))
        .await;
    assert_problem(status, &body, 409, "plan_exists");

    let (status, body) = app.call(Method::GET, "/v1/plans", Some(&token), None).await;
    assert_eq!(status, 200);
    assert!(
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|plan| plan["name"] == "gold")
    );

    let (status, patched) = app
        .call(
            Method::PATCH,
            "/v1/plans/gold",
            Some(&token),
            Some(json!({ "limits": { "max_users": 250, "trial_days": 30, "backup_interval_hours": 12 } })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["limits"]["max_users"], 250);
    assert_eq!(patched["limits"]["backup_interval_hours"], 12);
    assert_eq!(patched["limits"]["trial_days"], 30);
    assert_eq!(
        patched["limits"]["max_connections"], 15,
        "fields left out stay as they were"
    );
    let (status, cleared) = app
        .call(
            Method::PATCH,
            "/v1/plans/gold",
            Some(&token),
            Some(json!({ "display_name": "Gold+", "limits": { "trial_days": null } })),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert!(cleared["limits"]["trial_days"].is_null());
    assert_eq!(cleared["display_name"], "Gold+");

    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/plans/platinum",
            Some(&token),
            Some(json!({ "limits": { "max_users": 1 } })),
        )
        .await;
    assert_problem(status, &body, 404, "plan_not_found");

    // The catalog holds what the API said.
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    let (max_users, trial_days): (i32, Option<i32>) =
        sqlx::query_as("SELECT max_users, trial_days FROM plans WHERE name = 'gold'")
            .fetch_one(&mut catalog)
            .await
            .expect("row");
    assert_eq!((max_users, trial_days), (250, None));

    let entries = audit_entries(&app, &token).await;
    let plan_entries: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["entity_type"] == "plan")
        .collect();
    assert_eq!(
        plan_entries.len(),
        3,
        "one create and two updates: {plan_entries:?}"
    );
    // Newest first.
    let (second_update, first_update, create) = (plan_entries[0], plan_entries[1], plan_entries[2]);
    assert_eq!(create["action"], "plan.create");
    assert!(create["before"].is_null());
    assert_eq!(create["after"]["limits"]["max_users"], 200);
    assert_eq!(first_update["action"], "plan.update");
    assert_eq!(first_update["before"]["limits"]["max_users"], 200);
    assert_eq!(first_update["after"]["limits"]["max_users"], 250);
    assert_eq!(second_update["before"]["limits"]["trial_days"], 30);
    assert!(second_update["after"]["limits"]["trial_days"].is_null());
    for entry in [create, first_update, second_update] {
        assert_eq!(entry["actor"], ADMIN_EMAIL);
        assert!(entry["actor_id"].is_string());
        assert_eq!(entry["entity_id"], "gold");
    }
    assert!(entries.iter().any(|entry| {
        entry["action"] == "admin.create"
            && entry["actor"]
                .as_str()
                .is_some_and(|actor| actor.starts_with("tenantctl:"))
    }));
}

#[tokio::test]
async fn invalid_plans_are_422_and_change_nothing() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    let before = audit_entries(&app, &token).await.len();

    let mut negative = gold();
    negative["limits"]["max_users"] = json!(-5);
    negative["limits"]["max_connections"] = json!(0);
    let (status, body) = app
        .call(Method::POST, "/v1/plans", Some(&token), Some(negative))
        .await;
    assert_problem(status, &body, 422, "validation_failed");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["max_users", "max_connections"]);

    let mut wrong_type = gold();
    wrong_type["limits"]["max_storage_mb"] = json!("lots");
    let (status, body) = app
        .call(Method::POST, "/v1/plans", Some(&token), Some(wrong_type))
        .await;
    assert_problem(status, &body, 422, "invalid_body");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("max_storage_mb"),
        "{body}"
    );

    let mut unknown = gold();
    unknown["limits"]["max_cpus"] = json!(4);
    let (status, body) = app
        .call(Method::POST, "/v1/plans", Some(&token), Some(unknown))
        .await;
    assert_problem(status, &body, 422, "invalid_body");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("max_cpus"),
        "{body}"
    );

    let mut missing = gold();
    missing["limits"]
        .as_object_mut()
        .expect("object")
        .remove("statement_timeout_ms");
    let (status, body) = app
        .call(Method::POST, "/v1/plans", Some(&token), Some(missing))
        .await;
    assert_problem(status, &body, 422, "invalid_body");

    let mut bad_name = gold();
    bad_name["name"] = json!("Gold Plan");
    let (status, body) = app
        .call(Method::POST, "/v1/plans", Some(&token), Some(bad_name))
        .await;
    assert_problem(status, &body, 422, "validation_failed");

    let too_big = json!({ "limits": { "max_users": 3_000_000_000_i64 } });
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/plans/trial",
            Some(&token),
            Some(too_big),
        )
        .await;
    assert_problem(status, &body, 422, "invalid_body");
    let negative_timeout = json!({ "limits": { "statement_timeout_ms": -1 } });
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/plans/trial",
            Some(&token),
            Some(negative_timeout),
        )
        .await;
    assert_problem(status, &body, 422, "validation_failed");
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/plans/trial",
            Some(&token),
            Some(json!({ "limit": {} })),
        )
        .await;
    assert_problem(status, &body, 422, "invalid_body");

    let (_, plans) = app.call(Method::GET, "/v1/plans", Some(&token), None).await;
    assert_eq!(
        plans["items"].as_array().expect("items").len(),
        3,
        "no plan was created"
    );
    assert_eq!(
        plans["items"][2]["limits"]["statement_timeout_ms"], 5000,
        "trial unchanged"
    );
    assert_eq!(
        audit_entries(&app, &token).await.len(),
        before,
        "nothing was audited"
    );
}

#[tokio::test]
async fn the_audit_log_pages_with_a_cursor() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    for name in ["p1", "p2", "p3"] {
        let mut plan = gold();
        plan["name"] = json!(name);
        let (status, body) = app
            .call(Method::POST, "/v1/plans", Some(&token), Some(plan))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Four entries: the admin's creation and three plans.
    let (status, first) = app
        .call(Method::GET, "/v1/audit-log?limit=3", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|entry| entry["entity_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["p3", "p2", "p1"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (status, second) = app
        .call(
            Method::GET,
            &format!("/v1/audit-log?limit=3&cursor={cursor}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(second["items"].as_array().expect("items").len(), 1);
    assert_eq!(second["items"][0]["action"], "admin.create");
    assert!(second.get("next_cursor").is_none());

    for query in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=abc",
        "sort=asc",
    ] {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/v1/audit-log?{query}"),
                Some(&token),
                None,
            )
            .await;
        assert_problem(status, &body, 400, "bad_request");
    }
}
