//! Every AWS operation stackpilot makes, named as the AWS API names them:
//! the metric label of each call, the fake's call log, and the list tests
//! use to check that something made "no AWS writes".

macro_rules! actions {
    ($($variant:ident => $write:literal,)*) => {
        /// One AWS API action (operation).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            /// Every operation, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The AWS API name, e.g. `DescribeStacks`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => stringify!($variant),)*
                }
            }

            /// Whether the call changes something in AWS.
            pub fn is_write(self) -> bool {
                match self {
                    $(Action::$variant => $write,)*
                }
            }
        }
    };
}

actions! {
    DescribeStacks => false,
    CreateChangeSet => true,
    DescribeChangeSet => false,
    ExecuteChangeSet => true,
    UpdateStack => true,
    DeleteChangeSet => true,
    DeleteStack => true,
    DescribeStackEvents => false,
    GetTemplate => false,
    UpdateTerminationProtection => true,
    SetStackPolicy => true,
    GetStackPolicy => false,
    ContinueUpdateRollback => true,
    DetectStackDrift => true,
    DescribeStackDriftDetectionStatus => false,
    DescribeStackResourceDrifts => false,
    // S3, through `TemplateStore`.
    PutObject => true,
    // S3, for Pipeline sources.
    HeadObject => false,
    GetObject => false,
    // CloudWatch, for StackDeployment health gates.
    DescribeAlarms => false,
    DescribeAlarmHistory => false,
}

impl Action {
    /// The names of every write, for "no AWS writes" checks.
    pub fn writes() -> impl Iterator<Item = &'static str> {
        Action::ALL.iter().filter(|o| o.is_write()).map(|o| o.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn names_are_the_api_names_and_reads_are_not_writes() {
        assert_eq!(Action::ExecuteChangeSet.as_str(), "ExecuteChangeSet");
        let writes: Vec<_> = Action::writes().collect();
        for write in [
            "CreateChangeSet",
            "ExecuteChangeSet",
            "UpdateStack",
            "DeleteChangeSet",
            "DeleteStack",
            "ContinueUpdateRollback",
        ] {
            assert!(writes.contains(&write), "{write} is a write");
        }
        assert!(
            Action::ALL
                .iter()
                .filter(|o| o.as_str().starts_with("Describe") || o.as_str().starts_with("Get"))
                .all(|o| !o.is_write())
        );
    }
}
