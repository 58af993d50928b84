-- Test results are read by build, by step and by test name (a test's history across builds);
-- these indexes make each of those one lookup.
CREATE INDEX test_result_sets_builderid ON test_result_sets (builderid);
CREATE INDEX test_result_sets_buildid ON test_result_sets (buildid);
CREATE INDEX test_result_sets_stepid ON test_result_sets (stepid);
CREATE INDEX test_results_setid ON test_results (test_result_setid);
CREATE INDEX test_results_nameid ON test_results (test_nameid);
