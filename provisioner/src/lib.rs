//! Database operations on tenant databases: create and drop databases and roles, migrate,
//! back up and restore. The only crate that issues DDL on tenant servers. Empty until the
//! provisioning issue.
