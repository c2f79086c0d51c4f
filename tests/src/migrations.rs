//! The built-in tenant migrations as files, for tests that hand the platform a migrations
//! directory and add steps after them.

use std::path::Path;

/// Where the built-in tenant migrations live in this repository.
const BUILT_IN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/tenant");

/// The built-in steps: (file name, SQL), oldest first.
pub fn built_in_tenant_steps() -> Vec<(String, String)> {
    let mut steps: Vec<(i64, String, String)> = std::fs::read_dir(BUILT_IN_DIR)
        .expect("read migrations/tenant")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().into_string().expect("a UTF-8 file name");
            let version = step_version(&name);
            let sql = std::fs::read_to_string(entry.path()).expect("read a built-in step");
            (version, name, sql)
        })
        .collect();
    steps.sort_by_key(|(version, _, _)| *version);
    steps
        .into_iter()
        .map(|(_, name, sql)| (name, sql))
        .collect()
}

/// The version of a step file named `V<n>__<name>.sql`.
fn step_version(name: &str) -> i64 {
    name.strip_prefix('V')
        .and_then(|rest| rest.split_once("__"))
        .and_then(|(version, _)| version.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not named V<n>__<name>.sql"))
}

/// The newest built-in version: a test's own steps come after it.
pub fn built_in_tenant_version() -> i64 {
    built_in_tenant_steps()
        .last()
        .map(|(name, _)| step_version(name))
        .expect("at least one built-in step")
}

/// Writes the built-in steps into `dir`.
pub fn write_built_in_tenant_steps(dir: &Path) {
    for (name, sql) in built_in_tenant_steps() {
        std::fs::write(dir.join(name), sql).expect("write a built-in step");
    }
}
