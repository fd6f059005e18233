//! The task state machine: the one table of allowed transitions.
//!
//! `transition(from, command)` is pure. It returns the new status and the
//! event kind that records it; the store applies both in one transaction.
//! Anything not in the table is an [`InvalidTransition`]. The table itself
//! is written out in `docs/state-machine.md`.

use serde::{Deserialize, Serialize};

/// A column of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting on dependencies or held by a person.
    Backlog,
    /// May be leased.
    Ready,
    /// A worker holds a lease.
    Running,
    /// Waiting on a person (approval, input) or a budget.
    Blocked,
    /// Completed.
    Done,
    /// Failed for good: non-retryable failure or attempts exhausted.
    Failed,
    /// Cancelled by a person.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in board order.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Backlog,
        TaskStatus::Ready,
        TaskStatus::Running,
        TaskStatus::Blocked,
        TaskStatus::Done,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Backlog => "backlog",
            TaskStatus::Ready => "ready",
            TaskStatus::Running => "running",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a name produced by [`TaskStatus::as_str`].
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Open statuses can still change without a reopen.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            TaskStatus::Done | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// What is asked of a task. Facts the rule needs (is a dependency still
/// pending, are attempts left) travel with the command so the rule stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A new task. `waiting`: a dependency is unfinished or it is held.
    Create {
        /// Unfinished dependency or hold.
        waiting: bool,
    },
    /// The last dependency completed.
    DependenciesDone,
    /// A person holds the task back in the backlog.
    Hold,
    /// A person lifts the hold. `deps_pending`: it still waits on dependencies.
    Unhold {
        /// A dependency is still unfinished.
        deps_pending: bool,
    },
    /// A dependency was added to a ready task.
    DependencyAdded,
    /// A worker is granted a lease.
    Lease,
    /// The lease expired without a final write.
    Expire {
        /// The task may be tried again.
        attempts_left: bool,
    },
    /// The worker hands the task back (with notes).
    Release,
    /// The worker completed it.
    Complete,
    /// The worker reports a failure.
    Fail {
        /// The failure is worth retrying.
        retryable: bool,
        /// The task may be tried again.
        attempts_left: bool,
    },
    /// The worker needs a person or an approval.
    Block,
    /// A person or approval lets a blocked task go on.
    Unblock,
    /// A person cancels.
    Cancel,
    /// A person reopens a failed or cancelled task.
    Reopen {
        /// It must wait (dependencies unfinished or held).
        waiting: bool,
    },
}

/// The outcome of an allowed transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status after the command.
    pub to: TaskStatus,
    /// The event kind recorded with it.
    pub event: &'static str,
    /// Whether this transition raises an escalation (task failed for good).
    pub escalate: bool,
}

/// A command that the table does not allow from the task's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command} a task that is {from}")]
pub struct InvalidTransition {
    /// The status the task was in (`new` for creation).
    pub from: &'static str,
    /// The command's name.
    pub command: &'static str,
}

impl Command {
    /// A short verb naming the command, for errors and events.
    pub fn name(self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::DependenciesDone => "release dependencies of",
            Command::Hold => "hold",
            Command::Unhold { .. } => "unhold",
            Command::DependencyAdded => "add a dependency to",
            Command::Lease => "lease",
            Command::Expire { .. } => "expire",
            Command::Release => "release",
            Command::Complete => "complete",
            Command::Fail { .. } => "fail",
            Command::Block => "block",
            Command::Unblock => "unblock",
            Command::Cancel => "cancel",
            Command::Reopen { .. } => "reopen",
        }
    }
}

/// The transition table. `from` is `None` for a task being created.
pub fn transition(from: Option<TaskStatus>, cmd: Command) -> Result<Transition, InvalidTransition> {
    use Command as C;
    use TaskStatus as S;
    let ok = |to, event| {
        Ok(Transition {
            to,
            event,
            escalate: false,
        })
    };
    let escalated = |event| {
        Ok(Transition {
            to: S::Failed,
            event,
            escalate: true,
        })
    };
    match (from, cmd) {
        (None, C::Create { waiting: true }) => ok(S::Backlog, "task.created"),
        (None, C::Create { waiting: false }) => ok(S::Ready, "task.created"),
        (Some(S::Backlog), C::DependenciesDone) => ok(S::Ready, "task.ready"),
        (Some(S::Backlog | S::Ready), C::Hold) => ok(S::Backlog, "task.held"),
        (Some(S::Backlog), C::Unhold { deps_pending: true }) => ok(S::Backlog, "task.unheld"),
        (
            Some(S::Backlog),
            C::Unhold {
                deps_pending: false,
            },
        ) => ok(S::Ready, "task.unheld"),
        (Some(S::Backlog | S::Ready), C::DependencyAdded) => {
            ok(S::Backlog, "task.dependencies_changed")
        }
        (Some(S::Ready), C::Lease) => ok(S::Running, "task.leased"),
        (
            Some(S::Running),
            C::Expire {
                attempts_left: true,
            },
        ) => ok(S::Ready, "attempt.abandoned"),
        (
            Some(S::Running),
            C::Expire {
                attempts_left: false,
            },
        ) => escalated("attempt.abandoned"),
        (Some(S::Running), C::Release) => ok(S::Ready, "task.released"),
        (Some(S::Running), C::Complete) => ok(S::Done, "task.completed"),
        (
            Some(S::Running),
            C::Fail {
                retryable: true,
                attempts_left: true,
            },
        ) => ok(S::Ready, "task.failed"),
        (Some(S::Running), C::Fail { .. }) => escalated("task.failed"),
        (Some(S::Running), C::Block) => ok(S::Blocked, "task.blocked"),
        (Some(S::Blocked), C::Unblock) => ok(S::Ready, "task.unblocked"),
        (Some(s), C::Cancel) if s.is_open() => ok(S::Cancelled, "task.cancelled"),
        (Some(S::Failed | S::Cancelled), C::Reopen { waiting: true }) => {
            ok(S::Backlog, "task.reopened")
        }
        (Some(S::Failed | S::Cancelled), C::Reopen { waiting: false }) => {
            ok(S::Ready, "task.reopened")
        }
        (from, cmd) => Err(InvalidTransition {
            from: from.map_or("new", TaskStatus::as_str),
            command: cmd.name(),
        }),
    }
}

/// How long a task waits before its next try after `failed` failed attempts:
/// 1 s, 2 s, 4 s, … capped at 5 minutes. No jitter: retries are spread by
/// the workers' own timing, and a fixed schedule is easier to read on a board.
pub fn retry_backoff_ms(failed: u32) -> i64 {
    const BASE_MS: i64 = 1_000;
    const CAP_MS: i64 = 300_000;
    let exp = failed.saturating_sub(1).min(20);
    (BASE_MS << exp).min(CAP_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Vec<Command> {
        let mut v = vec![
            Command::DependenciesDone,
            Command::Hold,
            Command::DependencyAdded,
            Command::Lease,
            Command::Release,
            Command::Complete,
            Command::Block,
            Command::Unblock,
            Command::Cancel,
        ];
        for b in [true, false] {
            v.push(Command::Create { waiting: b });
            v.push(Command::Unhold { deps_pending: b });
            v.push(Command::Expire { attempts_left: b });
            v.push(Command::Reopen { waiting: b });
            for a in [true, false] {
                v.push(Command::Fail {
                    retryable: b,
                    attempts_left: a,
                });
            }
        }
        v
    }

    /// The design's table, written independently of `transition`, as
    /// (from, command, to). Every pair not listed must be refused.
    fn expected(from: Option<TaskStatus>, cmd: Command) -> Option<TaskStatus> {
        use Command as C;
        use TaskStatus as S;
        let to = match (from?, cmd) {
            (S::Backlog, C::DependenciesDone) => S::Ready,
            (S::Backlog, C::Hold) | (S::Ready, C::Hold) => S::Backlog,
            (S::Backlog, C::Unhold { deps_pending }) => {
                if deps_pending {
                    S::Backlog
                } else {
                    S::Ready
                }
            }
            (S::Backlog | S::Ready, C::DependencyAdded) => S::Backlog,
            (S::Ready, C::Lease) => S::Running,
            (S::Running, C::Expire { attempts_left }) => {
                if attempts_left {
                    S::Ready
                } else {
                    S::Failed
                }
            }
            (S::Running, C::Release) => S::Ready,
            (S::Running, C::Complete) => S::Done,
            (
                S::Running,
                C::Fail {
                    retryable,
                    attempts_left,
                },
            ) => {
                if retryable && attempts_left {
                    S::Ready
                } else {
                    S::Failed
                }
            }
            (S::Running, C::Block) => S::Blocked,
            (S::Blocked, C::Unblock) => S::Ready,
            (S::Backlog | S::Ready | S::Running | S::Blocked, C::Cancel) => S::Cancelled,
            (S::Failed | S::Cancelled, C::Reopen { waiting }) => {
                if waiting {
                    S::Backlog
                } else {
                    S::Ready
                }
            }
            _ => return None,
        };
        Some(to)
    }

    #[test]
    fn every_status_command_pair_matches_the_design_table() {
        let froms = std::iter::once(None).chain(TaskStatus::ALL.into_iter().map(Some));
        let mut allowed = 0;
        for from in froms {
            for cmd in commands() {
                let got = transition(from, cmd);
                let want = match (from, cmd) {
                    (None, Command::Create { waiting }) => Some(if waiting {
                        TaskStatus::Backlog
                    } else {
                        TaskStatus::Ready
                    }),
                    _ => expected(from, cmd),
                };
                match (got, want) {
                    (Ok(t), Some(w)) => {
                        assert_eq!(t.to, w, "{from:?} {cmd:?}");
                        assert_eq!(t.escalate, w == TaskStatus::Failed, "{from:?} {cmd:?}");
                        allowed += 1;
                    }
                    (Err(e), None) => assert_eq!(e.command, cmd.name()),
                    (got, want) => panic!("{from:?} {cmd:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(allowed, 28);
    }

    #[test]
    fn terminal_states_refuse_worker_writes() {
        for s in [TaskStatus::Done, TaskStatus::Failed, TaskStatus::Cancelled] {
            for c in [
                Command::Complete,
                Command::Release,
                Command::Block,
                Command::Lease,
            ] {
                assert!(transition(Some(s), c).is_err());
            }
        }
        assert!(transition(Some(TaskStatus::Done), Command::Reopen { waiting: false }).is_err());
    }
}
