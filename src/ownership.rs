//! How lackey marks what it owns in AWS: the tags every resource and task carries, and
//! the `startedBy` of the stack's tasks. Shared by the stack (which creates and deletes)
//! and the runner (which launches and finds tasks), so both agree on one definition.

/// The stack a resource or task belongs to.
pub const TAG_STACK: &str = "lackey:stack";
/// The run a task performs.
pub const TAG_RUN_ID: &str = "lackey:run-id";
/// `lackey` on everything lackey creates.
pub const TAG_MANAGED_BY: &str = "managed-by";

/// `startedBy` of the tasks a stack runs (ECS allows 36 characters): how `down`,
/// `logs` and `stop` find them.
pub fn started_by(stack: &str) -> String {
    format!("lackey:{stack}").chars().take(36).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_by_is_cut_to_ecs_limit_and_agrees_with_the_stack() {
        assert_eq!(started_by("team-b"), "lackey:team-b");
        let long = "x".repeat(60);
        assert_eq!(started_by(&long).chars().count(), 36);
        // The stack still has its own copy (its owner moves it here): both must agree,
        // or `down` would not find the tasks runs started.
        for stack in ["lackey", "team-b", long.as_str()] {
            assert_eq!(started_by(stack), crate::stack::started_by(stack));
        }
    }
}
