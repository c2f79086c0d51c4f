//! The sweep's decisions, from what a server holds and what the catalog knows.

use super::*;
use crate::{DatabaseObject, RoleObject};
use tenancy_core::TenantId;
use uuid::Uuid;

fn settings(mode: SweepMode) -> SweepSettings {
    SweepSettings {
        mode,
        quarantine: Duration::from_secs(7 * 86_400),
        min_age: Duration::from_secs(3_600),
    }
}

fn database(name: DatabaseName, mark: Option<Mark>, sessions: i64) -> DatabaseObject {
    DatabaseObject {
        name,
        mark,
        allows_connections: true,
        sessions,
    }
}

fn mark(installation: Installation, age: chrono::Duration) -> Mark {
    Mark {
        installation,
        created_at: Utc::now() - age,
        quarantined_at: None,
    }
}

#[test]
fn only_unknown_objects_of_ours_are_quarantined_and_dropped_after_the_period() {
    let ours = Installation(Uuid::new_v4());
    let theirs = Installation(Uuid::new_v4());
    let day = chrono::Duration::days(1);
    let known_tenant = TenantId::new();
    let [
        lost,
        young,
        busy,
        foreign,
        unmarked,
        old_quarantine,
        fresh_quarantine,
    ] = [(); 7].map(|()| TenantId::new());
    let quarantined = |since: chrono::Duration| Mark {
        quarantined_at: Some(Utc::now() - since),
        ..mark(ours, day * 30)
    };
    let objects = TenantObjects {
        databases: vec![
            database(
                DatabaseName::for_tenant(known_tenant),
                Some(mark(ours, day)),
                3,
            ),
            database(DatabaseName::for_tenant(lost), Some(mark(ours, day)), 0),
            database(
                DatabaseName::for_tenant(young),
                Some(mark(ours, chrono::Duration::minutes(5))),
                0,
            ),
            database(DatabaseName::for_tenant(busy), Some(mark(ours, day)), 2),
            database(
                DatabaseName::for_tenant(foreign),
                Some(mark(theirs, day * 90)),
                0,
            ),
            database(DatabaseName::for_tenant(unmarked), None, 0),
            database(
                DatabaseName::for_tenant(old_quarantine),
                Some(quarantined(day * 8)),
                0,
            ),
            database(
                DatabaseName::for_tenant(fresh_quarantine),
                Some(quarantined(day)),
                0,
            ),
        ],
        roles: vec![
            RoleObject {
                name: RoleName::for_tenant(known_tenant),
                mark: None,
                can_login: true,
            },
            RoleObject {
                name: RoleName::for_tenant(lost),
                mark: Some(mark(ours, day)),
                can_login: true,
            },
            RoleObject {
                name: RoleName::for_tenant(foreign),
                mark: Some(mark(theirs, day)),
                can_login: true,
            },
        ],
    };
    let known = Known {
        tenants: [known_tenant].into(),
        databases: [DatabaseName::for_tenant(known_tenant).as_str().to_owned()].into(),
    };
    let actions = plan(
        &objects,
        &known,
        ours,
        &settings(SweepMode::Quarantine),
        Utc::now(),
    );
    let db = |tenant| Object::Database(DatabaseName::for_tenant(tenant));
    let summary: Vec<(String, &str)> = actions
        .iter()
        .map(|action| {
            let label = match action {
                Action::Stamp(_) => "stamp",
                Action::Release(..) => "release",
                Action::Leave(_, _, OrphanState::Young) => "young",
                Action::Leave(_, _, OrphanState::InUse) => "in use",
                Action::Leave(_, _, OrphanState::Quarantined) => "quarantined",
                Action::Leave(..) => "leave",
                Action::Quarantine(..) => "quarantine",
                Action::Drop(..) => "drop",
            };
            (action_object(action).name().to_owned(), label)
        })
        .collect();
    let expected = vec![
        (db(lost).name().to_owned(), "quarantine"),
        (db(young).name().to_owned(), "young"),
        (db(busy).name().to_owned(), "in use"),
        (db(old_quarantine).name().to_owned(), "drop"),
        (db(fresh_quarantine).name().to_owned(), "quarantined"),
        (
            RoleName::for_tenant(known_tenant).as_str().to_owned(),
            "stamp",
        ),
        (RoleName::for_tenant(lost).as_str().to_owned(), "quarantine"),
    ];
    let mut sorted = summary.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "{summary:?}");

    // Report mode changes nothing; off does nothing at all.
    let reported = plan(
        &objects,
        &known,
        ours,
        &settings(SweepMode::Report),
        Utc::now(),
    );
    assert!(reported.iter().all(|action| matches!(
        action,
        Action::Stamp(_) | Action::Leave(..) | Action::Release(..)
    )));
    assert!(
        plan(
            &objects,
            &known,
            ours,
            &settings(SweepMode::Off),
            Utc::now()
        )
        .is_empty()
    );
}

#[test]
fn a_quarantined_object_known_again_is_released() {
    let ours = Installation(Uuid::new_v4());
    let tenant = TenantId::new();
    let quarantined = Mark {
        quarantined_at: Some(Utc::now()),
        ..mark(ours, chrono::Duration::days(2))
    };
    let objects = TenantObjects {
        databases: vec![database(
            DatabaseName::for_tenant(tenant),
            Some(quarantined),
            0,
        )],
        roles: vec![],
    };
    let known = Known {
        tenants: [tenant].into(),
        databases: [DatabaseName::for_tenant(tenant).as_str().to_owned()].into(),
    };
    assert_eq!(
        plan(
            &objects,
            &known,
            ours,
            &settings(SweepMode::Quarantine),
            Utc::now()
        ),
        vec![Action::Release(
            Object::Database(DatabaseName::for_tenant(tenant)),
            quarantined
        )]
    );
}
