//! The tenant database's schema: it will embed `migrations/tenant` and hold typed queries on
//! it. It knows no HTTP. Empty until the provisioning issue adds the first migration.
