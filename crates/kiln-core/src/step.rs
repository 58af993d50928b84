//! How a step's result folds into its build's result.

use crate::results::{Results, worst_status};

/// The flags through which a step decides what its result means for the build.
///
/// The defaults are Buildbot's: a failing step fails the build but the build goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFlags {
    pub halt_on_failure: bool,
    pub flunk_on_warnings: bool,
    pub flunk_on_failure: bool,
    pub warn_on_warnings: bool,
    pub warn_on_failure: bool,
    pub always_run: bool,
}

impl Default for StepFlags {
    fn default() -> Self {
        StepFlags {
            halt_on_failure: false,
            flunk_on_warnings: false,
            flunk_on_failure: true,
            warn_on_warnings: false,
            warn_on_failure: false,
            always_run: false,
        }
    }
}

impl StepFlags {
    /// Whether a step that ended with `result` puts its summary into the build's, as Buildbot's
    /// default `updateBuildSummaryPolicy` decides: always for EXCEPTION, RETRY and CANCELLED,
    /// for FAILURE when the step flunks, halts or warns on failure, for WARNINGS when it warns or
    /// flunks on warnings.
    pub fn updates_build_summary(&self, result: Results) -> bool {
        match result {
            Results::Exception | Results::Retry | Results::Cancelled => true,
            Results::Failure => {
                self.flunk_on_failure || self.halt_on_failure || self.warn_on_failure
            }
            Results::Warnings => self.warn_on_warnings || self.flunk_on_warnings,
            Results::Success | Results::Skipped => false,
        }
    }
}

/// Folds a finished step's `result` into the build's result so far.
///
/// Returns the new build result and whether the build must stop running further steps (those marked
/// `always_run` still run).
pub fn compute_result_and_termination(
    flags: &StepFlags,
    result: Results,
    previous: Results,
) -> (Results, bool) {
    let mut terminate = false;
    let contribution = match result {
        Results::Failure => {
            terminate = flags.halt_on_failure;
            if flags.flunk_on_failure {
                Results::Failure
            } else if flags.warn_on_failure {
                Results::Warnings
            } else {
                Results::Success
            }
        }
        Results::Warnings => {
            if flags.flunk_on_warnings {
                Results::Failure
            } else if flags.warn_on_warnings {
                Results::Warnings
            } else {
                Results::Success
            }
        }
        Results::Exception | Results::Retry | Results::Cancelled => {
            terminate = true;
            result
        }
        Results::Success | Results::Skipped => result,
    };
    (worst_status(previous, contribution), terminate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(flags: StepFlags, result: Results, expect: (Results, bool)) {
        assert_eq!(
            compute_result_and_termination(&flags, result, Results::Success),
            expect
        );
    }

    #[test]
    fn failure_flags() {
        let d = StepFlags::default();
        check(d, Results::Failure, (Results::Failure, false));
        check(
            StepFlags {
                halt_on_failure: true,
                ..d
            },
            Results::Failure,
            (Results::Failure, true),
        );
        check(
            StepFlags {
                flunk_on_failure: false,
                ..d
            },
            Results::Failure,
            (Results::Success, false),
        );
        check(
            StepFlags {
                flunk_on_failure: false,
                warn_on_failure: true,
                ..d
            },
            Results::Failure,
            (Results::Warnings, false),
        );
    }

    #[test]
    fn warnings_flags() {
        let d = StepFlags::default();
        check(d, Results::Warnings, (Results::Success, false));
        check(
            StepFlags {
                warn_on_warnings: true,
                ..d
            },
            Results::Warnings,
            (Results::Warnings, false),
        );
        check(
            StepFlags {
                flunk_on_warnings: true,
                ..d
            },
            Results::Warnings,
            (Results::Failure, false),
        );
    }

    #[test]
    fn exceptions_always_terminate_and_results_only_get_worse() {
        let d = StepFlags::default();
        for r in [Results::Exception, Results::Retry, Results::Cancelled] {
            check(d, r, (r, true));
        }
        let (r, t) = compute_result_and_termination(&d, Results::Success, Results::Failure);
        assert_eq!((r, t), (Results::Failure, false));
        let (r, _) = compute_result_and_termination(&d, Results::Skipped, Results::Success);
        assert_eq!(r, Results::Success);
    }
}
