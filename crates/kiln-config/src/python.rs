//! Reading a `master.cfg` written in Python as the Starlark it almost is.
//!
//! Import lines are turned into Starlark where the line was: a name from one of Buildbot's modules
//! becomes a lookup in kiln's predeclared namespaces (`_import` in the prelude), a standard module
//! kiln provides becomes its namespace (`_module`), and a module of the master directory's own
//! becomes a `load()` of its file. Python's chained assignment (`c = BuildmasterConfig = {}`)
//! becomes two assignments, and a top-level function's decorators (`@util.renderer`) are applied
//! after it is defined. Every line keeps its number, so diagnostics point at the user's lines.
//! Python that Starlark cannot have (classes, `try`, other decorators, `is`, `while`, …) is not
//! rewritten: it gets a located note saying what to write instead, shown when the file fails.
//!
//! The scanner knows strings (triple-quoted ones across lines), comments, brackets and backslash
//! continuations, so a statement is recognised only where Python would see one.

/// The standard modules a configuration may import, which kiln provides with Python's behaviour
/// where Starlark can have it.
pub const STANDARD_MODULES: &[&str] = &["os", "os.path", "re", "json", "datetime", "socket"];

/// A module of the master directory's own.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModule {
    /// The file to `load()`, as the loader names it.
    pub file: String,
    /// Its public top-level names, for `import module`.
    pub names: Vec<String>,
}

/// A message about one line (1-based) and column.
#[derive(Debug, Clone, PartialEq)]
pub struct LineMessage {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The source rewritten, with what could not be translated and the advice for later.
#[derive(Debug, Default)]
pub struct Translation {
    pub source: String,
    pub errors: Vec<LineMessage>,
    pub notes: Vec<LineMessage>,
}

/// One statement as Python reads it: its physical lines, its indentation, and its text with the
/// comments removed (`code`) and with the insides of strings removed too (`bare`).
struct Statement {
    first: usize,
    last: usize,
    indent: usize,
    code: String,
    bare: String,
}

/// Splits `source` into statements.
fn statements(source: &str) -> Vec<Statement> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    let mut current: Option<Statement> = None;
    // The open string's quote and whether it is triple-quoted.
    let mut string: Option<(char, bool)> = None;
    let mut depth = 0usize;
    for (n, line) in lines.iter().enumerate() {
        let st = current.get_or_insert_with(|| Statement {
            first: n,
            last: n,
            indent: line.len() - line.trim_start().len(),
            code: String::new(),
            bare: String::new(),
        });
        st.last = n;
        if !st.code.is_empty() {
            st.code.push('\n');
            st.bare.push(' ');
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut continued = false;
        while i < chars.len() {
            let c = chars[i];
            match string {
                Some((q, triple)) => {
                    st.code.push(c);
                    if c == '\\' && i + 1 < chars.len() {
                        st.code.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c == q {
                        if !triple {
                            string = None;
                            st.bare.push(q);
                        } else if chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q) {
                            st.code.push(q);
                            st.code.push(q);
                            st.bare.push_str(&q.to_string().repeat(3));
                            string = None;
                            i += 3;
                            continue;
                        }
                    }
                }
                None => match c {
                    '#' => break,
                    '"' | '\'' => {
                        let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                        if triple {
                            st.code.push_str(&c.to_string().repeat(3));
                            st.bare.push_str(&c.to_string().repeat(3));
                            string = Some((c, true));
                            i += 3;
                            continue;
                        }
                        st.code.push(c);
                        st.bare.push(c);
                        string = Some((c, false));
                    }
                    '(' | '[' | '{' => {
                        depth += 1;
                        st.code.push(c);
                        st.bare.push(c);
                    }
                    ')' | ']' | '}' => {
                        depth = depth.saturating_sub(1);
                        st.code.push(c);
                        st.bare.push(c);
                    }
                    '\\' if i + 1 == chars.len() => continued = true,
                    _ => {
                        st.code.push(c);
                        st.bare.push(c);
                    }
                },
            }
            i += 1;
        }
        // A single-quoted string does not outlive its line.
        if matches!(string, Some((_, false))) {
            string = None;
        }
        if depth == 0 && string.is_none() && !continued {
            let st = current.take().expect("a statement is open");
            if !st.code.trim().is_empty() {
                out.push(st);
            }
        }
    }
    out.extend(current.filter(|st| !st.code.trim().is_empty()));
    out
}

/// The public top-level names a module defines (`def name` and `name = …`), for `import module`.
pub fn public_names(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for st in statements(source).into_iter().filter(|st| st.indent == 0) {
        let bare = st.bare.trim();
        let name = if let Some(rest) = bare.strip_prefix("def ") {
            rest.split('(').next().unwrap_or_default().trim()
        } else {
            match bare.split_once('=') {
                Some((lhs, rhs)) if !rhs.starts_with('=') && is_identifier(lhs.trim()) => {
                    lhs.trim()
                }
                _ => continue,
            }
        };
        if is_identifier(name) && !name.starts_with('_') && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// `obj.attr = value` (Starlark's objects are immutable) as `obj = kiln_setattr(obj, "attr",
/// value)`: a copy with the attribute, bound to the same name, as configurations that give a
/// `Worker`, `BuilderConfig` or `BuildFactory` extra attributes expect. Only a statement on one
/// line is rewritten.
fn attribute_assignment(st: &Statement) -> Option<String> {
    if st.first != st.last {
        return None;
    }
    let code = st.code.trim();
    let (lhs, rhs) = code.split_once('=')?;
    if rhs.starts_with('=') || lhs.ends_with(['!', '<', '>', '+', '-', '*', '/', '%', '|', '&']) {
        return None;
    }
    let (object, attribute) = lhs.trim().split_once('.')?;
    if !is_identifier(object) || !is_identifier(attribute) {
        return None;
    }
    Some(format!(
        "{object} = kiln_setattr({object}, {attribute:?}, {})",
        rhs.trim()
    ))
}

/// `a = b = value` as two Starlark assignments, `b = value; a = b`, when every target is a name.
fn chained_assignment(st: &Statement) -> Option<String> {
    // Split on the `=` signs of the statement itself, not those inside strings or brackets.
    let mut targets = Vec::new();
    let mut rest = st.code.trim();
    while let Some((lhs, rhs)) = rest.split_once('=') {
        if rhs.starts_with('=') || lhs.ends_with(['!', '<', '>', '+', '-', '*', '/', '%', '|', '&'])
        {
            break;
        }
        let lhs = lhs.trim();
        if !is_identifier(lhs) {
            break;
        }
        targets.push(lhs.to_string());
        rest = rhs.trim_start();
    }
    if targets.len() < 2 {
        return None;
    }
    let last = targets.pop()?;
    let mut out = vec![format!("{last} = {rest}")];
    out.extend(targets.iter().rev().map(|t| format!("{t} = {last}")));
    Some(out.join("; "))
}

/// Rewrites the import lines of `source`; `local` finds a module of the master directory's own.
pub fn translate(source: &str, local: &dyn Fn(&str) -> Option<LocalModule>) -> Translation {
    let mut lines: Vec<String> = source.lines().map(str::to_string).collect();
    let mut t = Translation::default();
    // The decorators (their statements) waiting for the top-level function they decorate.
    let mut decorators: Vec<Statement> = Vec::new();
    for st in statements(source) {
        let text = st.code.trim();
        let at = |message: String| LineMessage {
            line: st.first + 1,
            column: st.indent + 1,
            message,
        };
        if st.indent == 0 && text.starts_with('@') {
            decorators.push(st);
            continue;
        }
        if !decorators.is_empty() {
            let pending = std::mem::take(&mut decorators);
            if !decorate(&pending, &st, &mut lines) {
                for d in &pending {
                    advise(d, &mut t.notes);
                }
            }
        }
        advise(&st, &mut t.notes);
        // `load` is a Starlark keyword, so Python's `json.load(f)` is read as `json.load_(f)`.
        if st.bare.contains(".load(") {
            for line in &mut lines[st.first..=st.last] {
                *line = outside_strings(line, ".load(", ".load_(");
            }
        }
        let replacement = if let Some(rest) = text.strip_prefix("from ") {
            let Some((module, names)) = rest.split_once(" import ") else {
                continue;
            };
            from_import(module.trim(), names, st.indent, local)
        } else if let Some(rest) = text.strip_prefix("import ") {
            plain_import(rest, st.indent, local)
        } else if let Some(two) = chained_assignment(&st) {
            Ok(two)
        } else if let Some(set) = attribute_assignment(&st) {
            Ok(set)
        } else {
            continue;
        };
        match replacement {
            Ok(code) => {
                lines[st.first] = format!("{}{code}", " ".repeat(st.indent));
                for line in &mut lines[st.first + 1..=st.last] {
                    line.clear();
                }
            }
            Err(why) => t.errors.push(at(why)),
        }
    }
    t.source = lines.join("\n");
    if source.ends_with('\n') {
        t.source.push('\n');
    }
    t
}

/// Applies top-level decorators to the function `def` that follows them, keeping every line: the
/// function is defined under a private name, and the first decorator's line binds the public name
/// to the decorated function, which reaches the private one through a lambda (resolved when called,
/// so it may be written before the function). False when `def` is not a top-level function.
fn decorate(decorators: &[Statement], def: &Statement, lines: &mut [String]) -> bool {
    let Some(rest) = def.code.trim().strip_prefix("def ") else {
        return false;
    };
    let name = rest.split('(').next().unwrap_or_default().trim();
    if def.indent != 0 || !is_identifier(name) {
        return false;
    }
    let private = format!("_decorated_{name}");
    let mut call = format!("lambda *args, **kwargs: {private}(*args, **kwargs)");
    for d in decorators.iter().rev() {
        let expression = d.code.trim().trim_start_matches('@').trim();
        call = format!("{expression}({call})");
    }
    for d in decorators {
        for line in &mut lines[d.first..=d.last] {
            line.clear();
        }
    }
    lines[decorators[0].first] = format!("{name} = {call}");
    let def_line = &mut lines[def.first];
    *def_line = def_line.replacen(&format!("def {name}"), &format!("def {private}"), 1);
    true
}

/// `line` with `from` replaced by `to` where it is code, not inside a string on that line.
fn outside_strings(line: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        let c = rest.chars().next().unwrap_or_default();
        match quote {
            None if rest.starts_with(from) => {
                out.push_str(to);
                i += from.len();
                continue;
            }
            None if c == '#' => {
                out.push_str(rest);
                break;
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' => {
                out.push(c);
                i += c.len_utf8();
                if let Some(next) = line[i..].chars().next() {
                    out.push(next);
                    i += next.len_utf8();
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether `module` is one of Buildbot's.
fn is_buildbot(module: &str) -> bool {
    module == "buildbot" || module.starts_with("buildbot.")
}

/// The names of an import list: `a, b as c`, possibly in parentheses, as (name, bound name).
fn names(list: &str) -> Result<Vec<(String, String)>, String> {
    let list = list.trim();
    let list = list
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or(list);
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let parts: Vec<&str> = item.split_whitespace().collect();
        match parts.as_slice() {
            [name] => out.push((name.to_string(), name.to_string())),
            [name, "as", alias] => out.push((name.to_string(), alias.to_string())),
            _ => return Err(format!("cannot read the import list {item:?}")),
        }
    }
    Ok(out)
}

fn from_import(
    module: &str,
    list: &str,
    indent: usize,
    local: &dyn Fn(&str) -> Option<LocalModule>,
) -> Result<String, String> {
    if module == "__future__" {
        return Ok("pass".into());
    }
    if list.trim() == "*" {
        return if is_buildbot(module) {
            // Every Buildbot name kiln has is predeclared.
            Ok("pass".into())
        } else {
            Err(format!(
                "`from {module} import *` is not supported: name what you use from {module}"
            ))
        };
    }
    let names = names(list)?;
    if is_buildbot(module) || STANDARD_MODULES.contains(&module) {
        let statements: Vec<String> = names
            .iter()
            .map(|(name, bound)| format!("{bound} = kiln_import({module:?}, {name:?})"))
            .collect();
        return Ok(statements.join("; "));
    }
    if let Some(m) = local(module) {
        if indent > 0 {
            return Err(format!(
                "a module of the master directory ({}) can only be imported at the top level of the file",
                m.file
            ));
        }
        let symbols: Vec<String> = names
            .iter()
            .map(|(name, bound)| format!("{bound}={name:?}"))
            .collect();
        return Ok(format!("load({:?}, {})", m.file, symbols.join(", ")));
    }
    Err(unknown_module(module))
}

fn plain_import(
    list: &str,
    indent: usize,
    local: &dyn Fn(&str) -> Option<LocalModule>,
) -> Result<String, String> {
    let mut statements = Vec::new();
    for (module, bound) in names(list)? {
        if is_buildbot(&module) {
            // `import buildbot.x` binds `buildbot`, which is predeclared with the 0.8 status modules.
            statements.push("pass".to_string());
        } else if STANDARD_MODULES.contains(&module.as_str()) {
            // `import os.path` binds `os`; with `as`, the module itself.
            let (name, target) = if bound == module {
                let top = module.split('.').next().unwrap_or_default().to_string();
                (top.clone(), top)
            } else {
                (bound.clone(), module.clone())
            };
            statements.push(format!("{name} = kiln_module({target:?})"));
        } else if let Some(m) = local(&module) {
            if indent > 0 || module.contains('.') && bound == module {
                return Err(format!(
                    "import {module}: write `from {module} import NAME` at the top level of the file"
                ));
            }
            let private = |n: &str| format!("_{bound}_{n}");
            let symbols: Vec<String> = m
                .names
                .iter()
                .map(|n| format!("{}={n:?}", private(n)))
                .collect();
            let fields: Vec<String> = m
                .names
                .iter()
                .map(|n| format!("{n}={}", private(n)))
                .collect();
            if !symbols.is_empty() {
                statements.push(format!("load({:?}, {})", m.file, symbols.join(", ")));
            }
            statements.push(format!("{bound} = struct({})", fields.join(", ")));
        } else {
            return Err(unknown_module(&module));
        }
    }
    Ok(statements.join("; "))
}

fn unknown_module(module: &str) -> String {
    let top = module.split('.').next().unwrap_or_default();
    let why = match top {
        "twisted" | "zope" => " (Twisted does not run inside kiln's configuration)",
        _ => "",
    };
    format!(
        "cannot import {module}{why}: kiln provides Buildbot's modules, the standard modules {}, \
         and modules of the master directory written in Starlark ({}.star or {}.py)",
        STANDARD_MODULES.join(", "),
        module.replace('.', "/"),
        module.replace('.', "/"),
    )
}

/// Notes for the Python a statement uses that Starlark cannot have.
fn advise(st: &Statement, notes: &mut Vec<LineMessage>) {
    let bare = st.bare.trim();
    let first_word = bare
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    let note = |message: &str| LineMessage {
        line: st.first + 1,
        column: st.indent + 1,
        message: message.to_string(),
    };
    let advice = match first_word {
        "class" => Some(
            "Starlark has no classes: write a function that returns struct(...) with the fields, \
             or a dict",
        ),
        "try" | "except" | "finally" => Some(
            "Starlark has no try/except: test the condition first (`if key in d`, \
             `d.get(key, default)`), or let the error stop the configuration",
        ),
        "while" => Some("Starlark has no while: write a for loop over range(...)"),
        "with" => Some("Starlark has no with: kiln's configuration cannot open files"),
        "raise" => Some("Starlark has no raise: write fail(\"message\")"),
        "global" | "nonlocal" => Some(
            "Starlark has no global: return the new value from the function and assign it at the \
             top level",
        ),
        "yield" => Some("Starlark has no generators: build and return a list"),
        "del" => Some("Starlark has no del: write d.pop(key) for a dict"),
        _ => None,
    };
    if let Some(a) = advice {
        notes.push(note(a));
    } else if let Some(decorator) = bare.strip_prefix('@') {
        let decorator = decorator.trim();
        notes.push(note(&format!(
            "Starlark has no decorators: delete @{decorator} and write `NAME = {decorator}(NAME)` \
             after the function"
        )));
    }
    let words: Vec<&str> = bare.split_whitespace().collect();
    if words.contains(&"is") {
        notes.push(note(
            "Starlark has no `is`: write `x == None` for `x is None` and `x != None` for `x is not None`",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<LocalModule> {
        None
    }

    #[test]
    fn buildbot_imports_become_lookups_on_the_same_lines() {
        let src = "from buildbot.plugins import *\n\
                   from buildbot.steps.shell import ShellCommand, Compile as C\n\
                   from buildbot.process.properties import (\n    Interpolate,\n    Property,\n)\n\
                   import os, re\nimport os.path\nimport json as j\nx = 'import os'\n";
        let t = translate(src, &none);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        let lines: Vec<&str> = t.source.lines().collect();
        assert_eq!(lines.len(), src.lines().count());
        assert_eq!(lines[0], "pass");
        assert_eq!(
            lines[1],
            "ShellCommand = kiln_import(\"buildbot.steps.shell\", \"ShellCommand\"); C = kiln_import(\"buildbot.steps.shell\", \"Compile\")"
        );
        assert!(lines[2].starts_with("Interpolate = kiln_import(\"buildbot.process.properties\""));
        assert_eq!(&lines[3..6], ["", "", ""]);
        assert_eq!(
            lines[6],
            "os = kiln_module(\"os\"); re = kiln_module(\"re\")"
        );
        assert_eq!(lines[7], "os = kiln_module(\"os\")");
        assert_eq!(lines[8], "j = kiln_module(\"json\")");
        assert_eq!(lines[9], "x = 'import os'");
    }

    #[test]
    fn chained_assignments_become_two_and_public_names_are_found() {
        let t = translate("c = BuildmasterConfig = {'a': 1}\nx == y\n", &none);
        assert_eq!(
            t.source,
            "BuildmasterConfig = {'a': 1}; c = BuildmasterConfig\nx == y\n"
        );
        let names = public_names("def make(x):\n    y = 1\nNAMES = ['a']\n_private = 2\nx == 3\n");
        assert_eq!(names, ["make", "NAMES"]);
    }

    #[test]
    fn top_level_decorators_are_applied_on_the_same_lines() {
        let src = "@util.renderer\n@other(1)\ndef f(props):\n    return 1\n";
        let t = translate(src, &none);
        assert_eq!(
            t.source,
            "f = util.renderer(other(1)(lambda *args, **kwargs: _decorated_f(*args, **kwargs)))\n\n\
             def _decorated_f(props):\n    return 1\n"
        );
        assert!(t.notes.is_empty(), "{:?}", t.notes);
    }

    #[test]
    fn attribute_assignments_make_a_copy_with_the_attribute() {
        let t = translate("f.workdir = 'src'\nx.y == 1\nf.a.b = 2\n", &none);
        assert_eq!(
            t.source,
            "f = kiln_setattr(f, \"workdir\", 'src')\nx.y == 1\nf.a.b = 2\n"
        );
    }

    #[test]
    fn strings_and_comments_hide_what_looks_like_an_import() {
        let src = "doc = \"\"\"\nimport nothing\n\"\"\"\n# import os\ny = 1 # from x import y\n";
        let t = translate(src, &none);
        assert_eq!(t.source, src);
        assert!(t.errors.is_empty());
    }

    #[test]
    fn local_modules_are_loaded_and_unknown_ones_refused_where_they_are_imported() {
        let local = |m: &str| {
            (m == "helpers").then(|| LocalModule {
                file: "helpers.py".into(),
                names: vec!["make".into(), "NAMES".into()],
            })
        };
        let src =
            "from helpers import make as mk\nimport helpers\nfrom twisted.python import log\n";
        let t = translate(src, &local);
        let lines: Vec<&str> = t.source.lines().collect();
        assert_eq!(lines[0], "load(\"helpers.py\", mk=\"make\")");
        assert_eq!(
            lines[1],
            "load(\"helpers.py\", _helpers_make=\"make\", _helpers_NAMES=\"NAMES\"); helpers = struct(make=_helpers_make, NAMES=_helpers_NAMES)"
        );
        assert_eq!(t.errors.len(), 1);
        assert_eq!((t.errors[0].line, t.errors[0].column), (3, 1));
        assert!(
            t.errors[0]
                .message
                .contains("cannot import twisted.python (Twisted does not run"),
            "{:?}",
            t.errors
        );
    }

    #[test]
    fn python_that_starlark_cannot_have_is_advised_on_its_line() {
        let src = "class Foo:\n    pass\ntry:\n    x = 1\nexcept KeyError:\n    pass\n\
                   @util.renderer\nx = 1\ndef f(props):\n    return props.getProperty('a') is None\n\
                   s = 'a is b'\n";
        let t = translate(src, &none);
        let at: Vec<(usize, &str)> = t
            .notes
            .iter()
            .map(|n| (n.line, n.message.split(':').next().unwrap_or_default()))
            .collect();
        assert_eq!(
            at,
            [
                (1, "Starlark has no classes"),
                (3, "Starlark has no try/except"),
                (5, "Starlark has no try/except"),
                (7, "Starlark has no decorators"),
                (10, "Starlark has no `is`"),
            ]
        );
        assert!(t.notes[3].message.contains("`NAME = util.renderer(NAME)`"));
    }
}
