//! Types and mechanisms every binary shares: identifiers that parse instead of validate,
//! password hashing, signed tokens, secrets, and telemetry set-up. No HTTP, no SQL.

pub mod bearer;
pub mod claims;
pub mod cursor;
pub mod hash_gate;
pub mod ids;
pub mod password;
pub mod sealing;
pub mod search;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod token;

pub use ids::{AdminId, BackupId, Email, IdError, PlanName, RunId, ServerId, Slug, TenantId};
