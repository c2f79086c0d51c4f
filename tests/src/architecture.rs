//! `docs/architecture.md` states every workspace crate's workspace dependencies; this test
//! holds the statement to `cargo metadata`, so the doc cannot drift from the code.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// A crate's workspace dependencies: normal ones, and optional ones (behind a feature).
#[derive(Debug, Default, PartialEq, Eq)]
struct Dependencies {
    normal: BTreeSet<String>,
    optional: BTreeSet<String>,
}

fn list(text: &str) -> BTreeSet<String> {
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The ```` ```text crate-graph ```` block: `crate -> a, b; dev: c, d`.
fn documented(doc: &str) -> BTreeMap<String, Dependencies> {
    let block = doc
        .split_once("```text crate-graph\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("docs/architecture.md has a ```text crate-graph block");
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (name, deps) = line.split_once("->").expect("`crate -> deps`");
            let (normal, optional) = match deps.split_once(';') {
                Some((normal, optional)) => {
                    let optional = optional
                        .split_once(':')
                        .map_or(optional, |(_, names)| names);
                    (list(normal), list(optional))
                }
                None => (list(deps), BTreeSet::new()),
            };
            (name.trim().to_owned(), Dependencies { normal, optional })
        })
        .collect()
}

fn actual(root: &std::path::Path) -> BTreeMap<String, Dependencies> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed: {output:?}");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect();
    packages
        .iter()
        .map(|package| {
            let mut deps = Dependencies::default();
            for dep in package["dependencies"].as_array().expect("dependencies") {
                let name = dep["name"].as_str().expect("name");
                if !members.contains(name) || !dep["kind"].is_null() {
                    continue; // not ours, or a dev/build dependency
                }
                if dep["optional"].as_bool() == Some(true) {
                    deps.optional.insert(name.to_owned());
                } else {
                    deps.normal.insert(name.to_owned());
                }
            }
            (package["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

#[test]
fn the_documented_crate_graph_is_the_real_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let doc = std::fs::read_to_string(root.join("docs/architecture.md"))
        .expect("read docs/architecture.md");
    assert_eq!(documented(&doc), actual(root));
}
