//! The OpenAPI document and the routes the router serves agree exactly.

use std::collections::BTreeSet;

use serde_json::Value;

use super::ops::OPENAPI;
use super::route_table;

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_served() {
    let served: BTreeSet<(String, String)> = route_table()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_lowercase(), path.to_owned()))
        .collect();
    let document = document();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .expect("operations")
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not documented"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
}

#[test]
fn every_operation_documents_its_answers() {
    let document = document();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let what = format!("{method} {path}");
            let responses = operation["responses"].as_object().expect("responses");
            let statuses: Vec<u16> = responses
                .keys()
                .map(|status| status.parse().expect("a numeric status"))
                .collect();
            assert!(
                statuses.iter().any(|status| (200..300).contains(status)),
                "{what}: a success"
            );
            if operation.get("security").is_some() {
                for status in [401, 403, 429, 500, 503] {
                    assert!(statuses.contains(&status), "{what}: documents {status}");
                }
            }
            if operation.get("requestBody").is_some() {
                for status in [400, 413, 415, 422] {
                    assert!(statuses.contains(&status), "{what}: documents {status}");
                }
            }
            if path.contains("{id}") {
                assert!(statuses.contains(&404), "{what}: documents 404");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{what} {status}: a problem document"
                    );
                }
            }
        }
    }
}
