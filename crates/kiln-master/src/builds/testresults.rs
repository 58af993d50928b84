//! Test results read from a `Test` step: the output of Rust's libtest harness (`cargo test`) or
//! of a TAP producer, read line by line as it arrives, or JUnit XML reports fetched from the
//! worker after the command. They are recorded in Buildbot's `test_result_sets` and
//! `test_results` tables (category `pass_fail`, value `1` for a pass and `0` for a failure;
//! skipped tests are counted, not recorded), so a test's history across builds can be queried.

use kiln_core::render::Renderable;
use kiln_db::{NewTestResult, NewTestResultSet};
use kiln_proto::{Args, Value};

use super::steps::{StepContext, WorkerLost};
use kiln_config::StepConfig;

/// At most this many results are kept from one step.
const MAX_RESULTS: usize = 100_000;
/// A JUnit report larger than this is refused.
const MAX_REPORT: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    pub name: String,
    pub code_path: Option<String>,
    pub line: Option<i64>,
    pub duration_ns: Option<i64>,
    pub verdict: Verdict,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestResults {
    pub cases: Vec<TestCase>,
}

impl TestResults {
    fn push(&mut self, case: TestCase) {
        if self.cases.len() < MAX_RESULTS {
            self.cases.push(case);
        }
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for case in &self.cases {
            match case.verdict {
                Verdict::Passed => c.passed += 1,
                Verdict::Failed => c.failed += 1,
                Verdict::Skipped => c.skipped += 1,
            }
        }
        c
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Counts {
    /// The step's state: `12 tests 11 passed 1 failed`, as Buildbot's `Test` says it.
    pub fn describe(&self) -> String {
        let total = self.passed + self.failed + self.skipped;
        let mut s = format!("{total} tests {} passed", self.passed);
        if self.failed > 0 {
            s.push_str(&format!(" {} failed", self.failed));
        }
        if self.skipped > 0 {
            s.push_str(&format!(" {} skipped", self.skipped));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    LibTest,
    Tap,
}

/// Reads test results from a command's output as it arrives.
pub struct TestOutput {
    format: Format,
    lines: super::lines::LineBuffer,
    results: TestResults,
}

impl TestOutput {
    pub fn libtest() -> Self {
        Self::new(Format::LibTest)
    }

    pub fn tap() -> Self {
        Self::new(Format::Tap)
    }

    fn new(format: Format) -> Self {
        TestOutput {
            format,
            lines: super::lines::LineBuffer::default(),
            results: TestResults::default(),
        }
    }

    pub fn feed(&mut self, text: &str) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(text, |l| self.line(l));
        self.lines = lines;
    }

    pub fn finish(&mut self) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.finish(|l| self.line(l));
    }

    pub fn into_results(self) -> TestResults {
        self.results
    }

    fn line(&mut self, line: &str) {
        let case = match self.format {
            Format::LibTest => libtest_line(line),
            Format::Tap => tap_line(line),
        };
        if let Some(case) = case {
            self.results.push(case);
        }
    }
}

fn case(name: &str, verdict: Verdict) -> TestCase {
    TestCase {
        name: name.to_string(),
        code_path: None,
        line: None,
        duration_ns: None,
        verdict,
    }
}

/// `test path::to::name ... ok` (or `FAILED`, or `ignored`, possibly with a reason).
fn libtest_line(line: &str) -> Option<TestCase> {
    let rest = line.strip_prefix("test ")?;
    let (name, verdict) = rest.rsplit_once(" ... ")?;
    let verdict = match verdict.trim() {
        "ok" => Verdict::Passed,
        "FAILED" => Verdict::Failed,
        v if v == "ignored" || v.starts_with("ignored,") => Verdict::Skipped,
        _ => return None,
    };
    // `should_panic` tests carry a suffix that is not part of their name.
    let name = name.trim().trim_end_matches(" - should panic");
    Some(case(name, verdict))
}

/// `ok 3 - name`, `not ok 4 name # TODO …`, `ok 5 # SKIP …`; indented subtests are not read.
fn tap_line(line: &str) -> Option<TestCase> {
    if let Some(reason) = line.strip_prefix("Bail out!") {
        return Some(case(format!("Bail out!{reason}").trim(), Verdict::Failed));
    }
    let (passed, rest) = if let Some(r) = line.strip_prefix("not ok") {
        (false, r)
    } else if let Some(r) = line.strip_prefix("ok") {
        (true, r)
    } else {
        return None;
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    let rest = rest.trim_start();
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let (number, rest) = rest.split_at(digits);
    let (description, directive) = match rest.split_once('#') {
        Some((d, dir)) => (d, Some(dir.trim().to_ascii_uppercase())),
        None => (rest, None),
    };
    let description = description.trim().trim_start_matches('-').trim();
    let name = if description.is_empty() {
        format!("test {number}")
    } else {
        description.to_string()
    };
    let verdict = match directive.as_deref() {
        Some(d) if d.starts_with("SKIP") => Verdict::Skipped,
        // A test marked TODO is expected to fail: its failure does not count.
        Some(d) if d.starts_with("TODO") && !passed => Verdict::Skipped,
        _ if passed => Verdict::Passed,
        _ => Verdict::Failed,
    };
    Some(case(&name, verdict))
}

/// Reads a JUnit XML report (`testsuites` or `testsuite`, any nesting) into `results`: each
/// `testcase` is a test named `classname.name`, failed when it holds a `failure` or `error`,
/// skipped when it holds `skipped`, passed otherwise. Malformed XML is an error naming where.
pub fn parse_junit(xml: &str, results: &mut TestResults) -> Result<(), String> {
    use quick_xml::events::Event as Xml;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut current: Option<TestCase> = None;
    // How deep inside the current test case the reader is: only its direct children count.
    let mut depth = 0usize;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {at}: {e}"))?;
        let (tag, empty) = match &event {
            Xml::Start(t) => (t, false),
            Xml::Empty(t) => (t, true),
            Xml::End(t) => {
                if current.is_some() {
                    if t.name().as_ref() == b"testcase" && depth == 0 {
                        if let Some(case) = current.take() {
                            results.push(case);
                        }
                    } else {
                        depth = depth.saturating_sub(1);
                    }
                }
                continue;
            }
            Xml::Eof => break,
            _ => continue,
        };
        let name = tag.name();
        match (name.as_ref(), current.as_mut()) {
            (b"testcase", None) => {
                let attrs = junit_attributes(tag, at)?;
                let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let test = get("name").unwrap_or_default();
                let case = TestCase {
                    name: match get("classname").filter(|c| !c.is_empty()) {
                        Some(class) => format!("{class}.{test}"),
                        None => test,
                    },
                    code_path: get("file"),
                    line: get("line").and_then(|l| l.parse().ok()),
                    duration_ns: get("time")
                        .and_then(|t| t.parse::<f64>().ok())
                        .map(|s| (s * 1e9).round() as i64),
                    verdict: Verdict::Passed,
                };
                if empty {
                    results.push(case);
                } else {
                    current = Some(case);
                    depth = 0;
                }
            }
            (child, Some(case)) => {
                if depth == 0 {
                    match child {
                        b"failure" | b"error" => case.verdict = Verdict::Failed,
                        b"skipped" if case.verdict != Verdict::Failed => {
                            case.verdict = Verdict::Skipped
                        }
                        _ => {}
                    }
                }
                if !empty {
                    depth += 1;
                }
            }
            _ => {}
        }
    }
    if current.is_some() {
        return Err("the report ends inside a testcase".into());
    }
    Ok(())
}

/// A tag's attributes, entities decoded; a malformed one is an error naming the tag and where.
fn junit_attributes(
    tag: &quick_xml::events::BytesStart<'_>,
    at: u64,
) -> Result<Vec<(String, String)>, String> {
    let tag_name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
    let bad = |why: String| format!("in <{tag_name}> at byte {at}: {why}");
    let mut out = Vec::new();
    for attr in tag.attributes() {
        let attr = attr.map_err(|e| match e {
            quick_xml::events::attributes::AttrError::UnquotedValue(_) => {
                bad("an attribute value is not quoted".into())
            }
            other => bad(other.to_string()),
        })?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|e| bad(format!("the value of {key}: {e}")))?
            .into_owned();
        out.push((key, value));
    }
    Ok(out)
}

/// Fetches the JUnit reports matching `glob` (relative to the working directory) from the
/// worker and reads them. No matching file is an error, as is a report that cannot be read.
pub async fn junit_from_worker(
    ctx: &StepContext<'_>,
    workdir: &str,
    glob: &Renderable,
) -> Result<Result<TestResults, String>, WorkerLost> {
    let pattern = match ctx.render_string(glob, "the JUnit report glob") {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let args = Args::build(vec![(
        "path",
        Value::from(ctx.worker_path(workdir, &pattern)),
    )]);
    let outcome = ctx
        .remote("glob", args, &mut super::transfer::Quiet)
        .await?;
    let mut files = outcome.files.unwrap_or_default();
    files.sort();
    if files.is_empty() {
        return Ok(Err(format!("no JUnit report matches {pattern}")));
    }
    let mut results = TestResults::default();
    for file in files {
        let bytes = match super::transfer::fetch_path(ctx, workdir, &file, MAX_REPORT).await? {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("cannot read {file}: {e}"))),
        };
        if let Err(e) = parse_junit(&String::from_utf8_lossy(&bytes), &mut results) {
            return Ok(Err(format!("{file}: {e}")));
        }
    }
    Ok(Ok(results))
}

/// Records a step's results as one set and returns the counts.
pub async fn record(ctx: &StepContext<'_>, step: &StepConfig, results: &TestResults) -> Counts {
    let counts = results.counts();
    let Some(builderid) = ctx.master.builder_ids().get(ctx.builder_name).map(|b| b.0) else {
        return counts;
    };
    let recorded: Vec<NewTestResult> = results
        .cases
        .iter()
        .filter(|c| c.verdict != Verdict::Skipped)
        .map(|c| NewTestResult {
            test_name: Some(c.name.clone()),
            test_code_path: c.code_path.clone(),
            line: c.line,
            duration_ns: c.duration_ns,
            value: if c.verdict == Verdict::Passed {
                "1"
            } else {
                "0"
            }
            .into(),
        })
        .collect();
    let set = NewTestResultSet {
        builderid,
        buildid: ctx.buildid.0,
        stepid: ctx.stepid.0,
        description: step.name.clone(),
        category: "pass_fail".into(),
        value_unit: "boolean".into(),
        tests_passed: counts.passed as i64,
        tests_failed: counts.failed as i64,
    };
    let written = ctx.master.updates.add_test_result_set(&set, &recorded);
    if let Err(error) = written.await {
        tracing::error!(step = %ctx.stepid, %error, "recording test results");
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(mut t: TestOutput, text: &str) -> Vec<(String, Verdict)> {
        // Fed in two pieces cut mid-line, as output arrives.
        let cut = text.len() / 2;
        let cut = (0..=cut)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        t.feed(&text[..cut]);
        t.feed(&text[cut..]);
        t.finish();
        t.into_results()
            .cases
            .into_iter()
            .map(|c| (c.name, c.verdict))
            .collect()
    }

    #[test]
    fn libtest_lines_become_results() {
        let out = "running 4 tests\ntest a::one ... ok\ntest a::two ... FAILED\n\
                   test b::slow ... ignored, too slow\ntest c::panics - should panic ... ok\n\
                   \ntest result: FAILED. 2 passed; 1 failed; 1 ignored\n";
        assert_eq!(
            read(TestOutput::libtest(), out),
            vec![
                ("a::one".into(), Verdict::Passed),
                ("a::two".into(), Verdict::Failed),
                ("b::slow".into(), Verdict::Skipped),
                ("c::panics".into(), Verdict::Passed),
            ]
        );
    }

    #[test]
    fn tap_lines_with_directives_become_results() {
        let out = "TAP version 13\n1..5\nok 1 - parses\nnot ok 2 - formats\n    ok 1 - subtest\n\
                   ok 3 # SKIP no network\nnot ok 4 later # TODO not yet\nok 5\nBail out! disk full\n";
        assert_eq!(
            read(TestOutput::tap(), out),
            vec![
                ("parses".into(), Verdict::Passed),
                ("formats".into(), Verdict::Failed),
                ("test 3".into(), Verdict::Skipped),
                ("later".into(), Verdict::Skipped),
                ("test 5".into(), Verdict::Passed),
                ("Bail out! disk full".into(), Verdict::Failed),
            ]
        );
    }

    #[test]
    fn junit_reports_are_read_and_bad_ones_refused() {
        let xml = r#"<?xml version="1.0"?>
<!-- generated -->
<testsuites><testsuite name="s" tests="4">
  <testcase classname="pkg.A" name="ok_one" time="0.5" file="a.py" line="3"/>
  <testcase classname="pkg.A" name="fails &amp; says so" time="1"><failure message="x &gt; y"><![CDATA[<trace>]]></failure></testcase>
  <testcase name="skipped"><skipped/></testcase>
  <testcase name='err'><system-out>noise <b>bold</b></system-out><error type="E"/></testcase>
</testsuite></testsuites>"#;
        let mut r = TestResults::default();
        parse_junit(xml, &mut r).unwrap();
        let got: Vec<(&str, Verdict)> = r
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.verdict))
            .collect();
        assert_eq!(
            got,
            vec![
                ("pkg.A.ok_one", Verdict::Passed),
                ("pkg.A.fails & says so", Verdict::Failed),
                ("skipped", Verdict::Skipped),
                ("err", Verdict::Failed),
            ]
        );
        assert_eq!(r.cases[0].duration_ns, Some(500_000_000));
        assert_eq!(r.cases[0].code_path.as_deref(), Some("a.py"));
        assert_eq!(r.cases[0].line, Some(3));
        assert_eq!(r.counts().describe(), "4 tests 1 passed 2 failed 1 skipped");
        let err = parse_junit(
            "<testsuite><testcase name=\"x\">",
            &mut TestResults::default(),
        )
        .unwrap_err();
        assert!(err.contains("ends inside a testcase"), "{err}");
        let err = parse_junit("<testcase name=x/>", &mut TestResults::default()).unwrap_err();
        assert!(err.contains("not quoted"), "{err}");
    }
}
