//! Runs that fail, stop or die: failing tenants and canaries, one run at a time, killed and stopped runs resumed.

use super::*;

#[tokio::test]
async fn failing_tenants_stop_the_run_or_are_reported_and_a_failing_canary_touches_nobody_else() {
    let fleet = Fleet::start(30).await;
    fleet.add_step(
        &step(1, "unique_customer_emails"),
        "CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));\n",
    );
    let order = fleet.planned_order();
    assert_eq!(order.len(), 30);
    // Three tenants whose data violates the new unique index, the first at position 4.
    let mut bad = vec![order[3].clone(), order[14].clone(), order[24].clone()];
    bad.sort();
    for slug in &bad {
        let mut database = fleet.tenant_database(slug).await;
        sqlx::query(
            "INSERT INTO app.customers (code, name, email) VALUES \
             ('C-1', 'One', 'same@example.com'), ('C-2', 'Two', 'SAME@example.com')",
        )
        .execute(&mut database)
        .await
        .expect("insert duplicate e-mails");
    }

    // Without --continue-on-error: stops launching at the first failure.
    let output = fleet.migrate(&["run", "--concurrency", "1"]);
    let report = failed_json(&output);
    assert!(
        stderr(&output).contains("stopped at the first failure"),
        "{}",
        stderr(&output)
    );
    assert_eq!(report["outcome"], "failed");
    assert_eq!(slugs_where(&report, false), vec![order[3].clone()]);
    assert_eq!(slugs_where(&report, true).len(), 3, "{report}");
    assert_eq!(
        report["not_started"].as_array().expect("not_started").len(),
        26
    );
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 3, "{status}");
    assert_eq!(status["summary"]["failed"], 1);
    assert_eq!(status["summary"]["pending"], 26);

    // With it: the 27 good tenants are migrated, the 3 bad ones are reported.
    let output = fleet.migrate(&["run", "--concurrency", "4", "--continue-on-error"]);
    let report = failed_json(&output);
    assert_eq!(slugs_where(&report, false), bad);
    assert_eq!(
        slugs_where(&report, true).len(),
        24,
        "the 27 minus the 3 done before"
    );
    for item in tenant_items(&report)
        .into_iter()
        .filter(|item| item["succeeded"] == false)
    {
        let error = item["error"].as_str().expect("error");
        assert!(
            error.contains("could not create unique index") && error.contains("23505"),
            "the Postgres error is reported: {error}"
        );
    }
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 27, "{status}");
    assert_eq!(status["summary"]["failed"], 3);
    let mut failed: Vec<String> = status["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter(|tenant| tenant["state"] == "failed")
        .map(|tenant| {
            assert!(
                tenant["last_error"]
                    .as_str()
                    .is_some_and(|error| error.contains("could not create unique index"))
            );
            tenant["slug"].as_str().expect("slug").to_owned()
        })
        .collect();
    failed.sort();
    assert_eq!(failed, bad);
    // The failed tenants were left exactly as they were.
    for slug in &bad {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(history_version(&mut database).await, base());
        assert!(!index_exists(&mut database, "customers_email_key").await);
    }

    // Fix the data; the re-run migrates just those three.
    for slug in &bad {
        let mut database = fleet.tenant_database(slug).await;
        sqlx::query("DELETE FROM app.customers WHERE code = 'C-2'")
            .execute(&mut database)
            .await
            .expect("fix the data");
    }
    let report = json_of(&fleet.migrate(&["run"]));
    assert_eq!(slugs_where(&report, true), bad);
    assert_eq!(report["items"].as_array().expect("items").len(), 3);
    assert_eq!(fleet.status().await["summary"]["current"], 30);

    // A canary of 5 with one failing tenant: no other tenant is touched.
    fleet.add_step(
        &step(2, "unique_supplier_names"),
        "CREATE UNIQUE INDEX suppliers_name_key ON suppliers (name);\n",
    );
    let order = fleet.planned_order();
    let mut database = fleet.tenant_database(&order[2]).await;
    sqlx::query("INSERT INTO app.suppliers (code, name) VALUES ('S-1', 'Acme'), ('S-2', 'Acme')")
        .execute(&mut database)
        .await
        .expect("insert duplicate supplier names");
    let output = fleet.migrate(&["run", "--canary", "5", "--continue-on-error"]);
    let report = failed_json(&output);
    assert!(stderr(&output).contains("canary"), "{}", stderr(&output));
    assert_eq!(report["canary_failed"], true);
    assert_eq!(slugs_where(&report, false), vec![order[2].clone()]);
    let mut canaries = order[..5].to_vec();
    canaries.sort();
    let mut touched = slugs_where(&report, true);
    touched.extend(slugs_where(&report, false));
    touched.sort();
    assert_eq!(touched, canaries);
    assert_eq!(
        report["not_started"].as_array().expect("not_started").len(),
        25
    );
    let run_id = report["run_id"].as_i64().expect("run id");
    let mut catalog = fleet.catalog().await;
    let in_ledger: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT tenant_id) FROM migration_ledger WHERE run_id = $1 AND kind = 'tenant'",
    )
    .bind(run_id)
    .fetch_one(&mut catalog)
    .await
    .expect("read the ledger");
    assert_eq!(in_ledger, 5);
    for slug in &order[5..] {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(
            history_version(&mut database).await,
            base() + 1,
            "{slug} untouched"
        );
    }
}

async fn ledger_count(catalog: &mut sqlx::PgConnection, run: Option<i64>, outcome: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM migration_ledger WHERE kind = 'tenant' AND outcome = $2 \
         AND ($1::bigint IS NULL OR run_id = $1)",
    )
    .bind(run)
    .bind(outcome)
    .fetch_one(catalog)
    .await
    .expect("read the ledger")
}

async fn newest_run(catalog: &mut sqlx::PgConnection) -> Option<i64> {
    sqlx::query_scalar("SELECT max(id) FROM migration_runs")
        .fetch_one(catalog)
        .await
        .expect("read the runs")
}

/// Waits until a run newer than `after` has finished `count` tenants; returns its id.
async fn wait_for_progress(catalog: &mut sqlx::PgConnection, after: i64, count: i64) -> i64 {
    eventually(Duration::from_secs(60), "progress of the run", async || {
        let run = newest_run(catalog).await.filter(|run| *run > after)?;
        (ledger_count(catalog, Some(run), "succeeded").await >= count).then_some(run)
    })
    .await
}

#[tokio::test]
async fn one_run_at_a_time_and_killed_or_stopped_runs_resume_with_no_half_migrated_tenant() {
    let fleet = Fleet::start(12).await;
    // Two changes with a pause between them: a run killed between the two would leave a
    // half-migrated tenant if the steps were not one transaction.
    fleet.add_step(
        &step(1, "slow_two_part_change"),
        "ALTER TABLE customers ADD COLUMN segment text;\n\
         SELECT pg_sleep(0.6);\n\
         CREATE INDEX customers_segment_idx ON customers (segment);\n",
    );
    let mut catalog = fleet.catalog().await;
    let mut first = fleet.spawn_migrate(&["run", "--concurrency", "2"]);
    let run = wait_for_progress(&mut catalog, 0, 3).await;

    // A second run refuses, naming the one that holds the lock.
    let output = fleet.migrate(&["run"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "another migration run holds the lock: run {run} by tenantctl:"
        )) && message.contains(&format!("pid {}", first.child.id())),
        "{message}"
    );

    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    // Give the server a moment to notice the vanished client and roll back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut migrated = 0;
    for slug in &fleet.slugs {
        let mut database = fleet.tenant_database(slug).await;
        let version = history_version(&mut database).await;
        let column = column_exists(&mut database, "customers", "segment").await;
        let index = index_exists(&mut database, "customers_segment_idx").await;
        assert!(
            (version == base() + 1 && column && index) || (version == base() && !column && !index),
            "{slug} is half-migrated: version {version}, column {column}, index {index}"
        );
        migrated += usize::from(version == base() + 1);
    }
    assert!(
        (3..12).contains(&migrated),
        "killed mid-way, {migrated} migrated"
    );

    // The control plane's jobs close the dead run and lift its marks (no tenant stays
    // `503 tenant_migrating`); the re-run finishes the rest.
    eventually(Duration::from_secs(10), "the dead run closed", async || {
        let (outcome, marked): (String, i64) = sqlx::query_as(
            "SELECT outcome, (SELECT count(*) FROM tenants WHERE migrating_run IS NOT NULL) \
             FROM migration_runs WHERE id = $1",
        )
        .bind(run)
        .fetch_one(&mut catalog)
        .await
        .expect("read the run");
        if outcome == "interrupted" && marked == 0 {
            Ok(())
        } else {
            Err(format!("{outcome}, {marked} marked"))
        }
    })
    .await;
    let report = json_of(&fleet.migrate(&["run", "--concurrency", "2"]));
    assert_eq!(report["interrupted_runs"], serde_json::json!([]));
    assert_eq!(report["outcome"], "succeeded");
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 12, "{status}");
    assert_eq!(status["summary"]["migrating"], 0);
    for slug in &fleet.slugs {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(history_version(&mut database).await, base() + 1);
        assert!(index_exists(&mut database, "customers_segment_idx").await);
    }
    let dead_run: String = sqlx::query_scalar("SELECT outcome FROM migration_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&mut catalog)
        .await
        .expect("read the run");
    assert_eq!(dead_run, "interrupted");

    // Ctrl-C: no new tenant is started, those in flight finish, everything is recorded.
    fleet.add_step(
        &step(2, "slow_step"),
        "ALTER TABLE suppliers ADD COLUMN rating int;\nSELECT pg_sleep(0.4);\n",
    );
    let previous = newest_run(&mut catalog).await.expect("a run");
    let mut stopped = fleet.spawn_migrate(&["run", "--concurrency", "1"]);
    let run = wait_for_progress(&mut catalog, previous, 2).await;
    stopped.signal(Signal::SIGINT);
    let code = stopped.wait_exit(Duration::from_secs(30));
    assert_ne!(code, Some(0));
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM migration_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&mut catalog)
        .await
        .expect("read the run");
    assert_eq!(outcome, "stopped");
    assert_eq!(ledger_count(&mut catalog, Some(run), "running").await, 0);
    let done = ledger_count(&mut catalog, Some(run), "succeeded").await;
    assert!((2..12).contains(&done), "{done} done before the stop");
    let status = fleet.status().await;
    assert_eq!(status["summary"]["migrating"], 0);
    assert_eq!(status["summary"]["current"], done, "{status}");
    let report = json_of(&fleet.migrate(&["run", "--concurrency", "4"]));
    assert_eq!(
        i64::try_from(tenant_items(&report).len()).expect("count"),
        12 - done
    );
    assert_eq!(fleet.status().await["summary"]["current"], 12);
}
