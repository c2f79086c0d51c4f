//! Rebuilds this crate when a tenant migration is added or changed: refinery's
//! `embed_migrations!` reads `migrations/tenant` at compile time, and cargo does not know
//! that on its own.

fn main() {
    println!("cargo:rerun-if-changed=../migrations/tenant");
}
