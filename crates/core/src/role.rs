//! Roles of API tokens and what each may do.

use serde::{Deserialize, Serialize};

/// Who a token acts as, within its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in its tenant; in the `default` tenant also creates tenants.
    Admin,
    /// A person running the board: creates and steers tasks.
    Operator,
    /// A process that leases and works tasks.
    Worker,
    /// An AI agent: works tasks and may add tasks and decisions.
    Agent,
    /// Read-only.
    Viewer,
}

/// An action that needs a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read tasks, board, events, blobs, context.
    Read,
    /// Create and edit tasks, record decisions.
    WriteTasks,
    /// Person-driven transitions: hold, unhold, unblock, cancel, reopen.
    Steer,
    /// Lease tasks and write under a lease; upload blobs.
    Work,
    /// Create tokens in the own tenant.
    ManageTokens,
}

impl Role {
    /// All roles, for tables and tests.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Worker,
        Role::Agent,
        Role::Viewer,
    ];

    /// Whether this role may do `p`.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        use Role::*;
        matches!(
            (self, p),
            (Admin, _)
                | (_, Read)
                | (Operator, WriteTasks | Steer)
                | (Worker, Work)
                | (Agent, Work | WriteTasks)
        )
    }

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Worker => "worker",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a name produced by [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}
