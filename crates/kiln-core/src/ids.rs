//! Identifier newtypes, so that a build id is never passed where a step id is expected.

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_type!(
    /// A row of `masters`.
    MasterId,
    /// A row of `builders`.
    BuilderId,
    /// A row of `workers`.
    WorkerId,
    /// A row of `builds`.
    BuildId,
    /// A row of `steps`.
    StepId,
    /// A row of `logs`.
    LogId,
    /// A row of `buildsets`.
    BuildSetId,
    /// A row of `buildrequests`.
    BuildRequestId,
    /// A row of `sourcestamps`.
    SourceStampId,
    /// A row of `changes`.
    ChangeId,
    /// A row of `schedulers`.
    SchedulerId,
);
