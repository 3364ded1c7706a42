//! The call log: every CloudFormation and S3 call of the fake passes
//! [`State::enter`], which records it and applies injected errors.

use crate::aws::AwsResult;

use super::errors::{next_unit, server_error, throttling_error};
use super::model::State;

pub use crate::aws::Action;

/// One recorded call: operation, the stack as the caller named it (empty for
/// the bulk read and `PutObject`; the run's stack for a drift status read),
/// and the change set name where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub operation: Action,
    pub stack: String,
    pub change_set: Option<String>,
}

impl State {
    /// Logs the call and applies error injection.
    pub(super) fn enter(&mut self, operation: Action, stack: &str, change_set: Option<&str>) -> AwsResult<()> {
        let call = Call {
            operation,
            stack: stack.to_string(),
            change_set: change_set.map(str::to_string),
        };
        *self.call_counts.entry(operation).or_default() += 1;
        let mut failure = None;
        if let Some((rates, sequence)) = &mut self.faults {
            let draw = next_unit(sequence);
            if draw < rates.throttled {
                self.fault_counts.throttled += 1;
                failure = Some(throttling_error());
            } else if draw < rates.throttled + rates.server_errors {
                self.fault_counts.server_errors += 1;
                failure = Some(server_error());
            }
        }
        if failure.is_none() {
            for injection in &mut self.injections {
                if injection.matches(&call) && injection.fire() {
                    failure = Some(injection.error.clone());
                    break;
                }
            }
        }
        if self.record_calls {
            self.calls.push(call);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
