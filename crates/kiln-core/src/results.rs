//! Buildbot's seven result codes and how they combine.

/// The result of a step, a build, a build request or a buildset.
///
/// The numeric values are Buildbot's and appear as such in the database and the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Results {
    Success = 0,
    Warnings = 1,
    Failure = 2,
    Skipped = 3,
    Exception = 4,
    Retry = 5,
    Cancelled = 6,
}

impl Results {
    /// Every result, in code order.
    pub const ALL: [Results; 7] = [
        Results::Success,
        Results::Warnings,
        Results::Failure,
        Results::Skipped,
        Results::Exception,
        Results::Retry,
        Results::Cancelled,
    ];

    /// The code stored in the database and shown in the API.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The result for a stored code, or `None` for a code Buildbot does not define.
    pub fn from_code(code: i64) -> Option<Results> {
        Results::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// The lower-case name Buildbot uses in state strings and messages.
    pub fn name(self) -> &'static str {
        match self {
            Results::Success => "success",
            Results::Warnings => "warnings",
            Results::Failure => "failure",
            Results::Skipped => "skipped",
            Results::Exception => "exception",
            Results::Retry => "retry",
            Results::Cancelled => "cancelled",
        }
    }

    /// How bad a result is; a higher rank wins in [`worst_status`]. SKIPPED is the mildest, below
    /// SUCCESS, so that a skipped step never hides a success.
    /// Buildbot's name for several results of this kind (`2 failures`).
    pub fn plural(self) -> &'static str {
        match self {
            Results::Success => "successes",
            Results::Warnings => "warnings",
            Results::Failure => "failures",
            Results::Skipped => "skipped",
            Results::Exception => "exceptions",
            Results::Retry => "retries",
            Results::Cancelled => "cancelled",
        }
    }

    fn severity(self) -> u8 {
        match self {
            Results::Skipped => 0,
            Results::Success => 1,
            Results::Warnings => 2,
            Results::Failure => 3,
            Results::Exception => 4,
            Results::Retry => 5,
            Results::Cancelled => 6,
        }
    }
}

/// The worse of two results, in Buildbot's order (worst first): CANCELLED, RETRY, EXCEPTION, FAILURE,
/// WARNINGS, SUCCESS, SKIPPED.
pub fn worst_status(a: Results, b: Results) -> Results {
    if b.severity() > a.severity() { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for r in Results::ALL {
            assert_eq!(Results::from_code(r.code()), Some(r));
        }
        assert_eq!(Results::from_code(7), None);
        assert_eq!(Results::from_code(-1), None);
    }

    #[test]
    fn worst_status_follows_buildbot_order() {
        let order = [
            Results::Cancelled,
            Results::Retry,
            Results::Exception,
            Results::Failure,
            Results::Warnings,
            Results::Success,
            Results::Skipped,
        ];
        for (i, &a) in order.iter().enumerate() {
            for &b in &order[i..] {
                assert_eq!(worst_status(a, b), a, "{a:?} vs {b:?}");
                assert_eq!(worst_status(b, a), a, "{b:?} vs {a:?}");
            }
        }
    }
}
