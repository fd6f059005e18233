//! Input limits. Larger inputs are refused with `payload_too_large` (413)
//! before anything is written.

/// Largest JSON request body.
pub const MAX_JSON_BODY: usize = 2 * 1024 * 1024;
/// Largest blob upload.
pub const MAX_BLOB: usize = 16 * 1024 * 1024;
/// Largest checkpoint `state`, or `test_results`, or task `result`, serialized.
pub const MAX_STATE: usize = 1024 * 1024;
/// Largest title, worker name, label, artifact name.
pub const MAX_NAME: usize = 500;
/// Largest goal, notes, error, reason, summary, rationale.
pub const MAX_TEXT: usize = 64 * 1024;
/// Most list entries (labels, acceptance, dependencies, artifacts, do_not_retry).
pub const MAX_ITEMS: usize = 1000;
/// Most tasks leased in one claim.
pub const MAX_CLAIM: u32 = 100;
/// Longest long-poll.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Lease time-to-live bounds, seconds.
pub const MIN_TTL_S: u32 = 1;
/// See [`MIN_TTL_S`].
pub const MAX_TTL_S: u32 = 86_400;
/// Most attempts a task may be given.
pub const MAX_ATTEMPTS: u32 = 1000;
/// Longest page of a list.
pub const MAX_PAGE: u32 = 500;
