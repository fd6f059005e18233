//! The domain of aruntime: tasks and their state machine, attempts, checkpoints,
//! events, the clock, and the context bundle handed to the next worker.
//!
//! Key decision: this crate does no I/O. The state machine is one pure
//! function ([`machine::transition`]) that says where a task goes and which
//! event records it; the storage crate applies that inside one transaction.
//! Keeping the rules here means both database backends obey the same table and
//! the table is tested exhaustively without a database.

pub mod clock;
pub mod context;
pub mod entity;
pub mod machine;
pub mod role;

pub use clock::{Clock, MockClock, SystemClock, Timestamp};
pub use entity::*;
pub use machine::{
    Command, InvalidTransition, TaskStatus, Transition, retry_backoff_ms, transition,
};
pub use role::{Permission, Role};
