//! Rebuilds this crate when a catalog migration is added or changed: `sqlx::migrate!`
//! embeds `migrations/catalog` at compile time.

fn main() {
    println!("cargo:rerun-if-changed=../migrations/catalog");
}
