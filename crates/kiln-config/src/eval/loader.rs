//! The master directory's own modules: `load("helpers.star", "x")`, and Python's
//! `from helpers import x` for a `helpers.py` (or `helpers.star`) written in Starlark.
//!
//! A module is read as the configuration is (its imports translated, the prelude predeclared),
//! evaluated once per load, and frozen. Only files inside the master directory can be loaded, and a
//! cycle of loads is an error that names it.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use starlark::environment::{FrozenModule, Globals, Module};
use starlark::eval::{Evaluator, FileLoader};
use starlark::syntax::AstModule;

use super::{EVAL_TIME_LIMIT, dialect};
use crate::python::{LocalModule, public_names, translate};

/// Loads can nest at most this deep.
const MAX_LOAD_DEPTH: usize = 16;

pub struct DirLoader<'a> {
    dir: Option<&'a Path>,
    globals: &'a Globals,
    prelude: &'a FrozenModule,
    started: Instant,
    /// The modules being loaded, outermost first.
    loading: RefCell<Vec<String>>,
}

impl<'a> DirLoader<'a> {
    pub fn new(
        dir: Option<&'a Path>,
        globals: &'a Globals,
        prelude: &'a FrozenModule,
        started: Instant,
    ) -> DirLoader<'a> {
        DirLoader {
            dir,
            globals,
            prelude,
            started,
            loading: RefCell::new(Vec::new()),
        }
    }
}

/// The file of a `load()` path inside the master directory, refusing one that leaves it.
fn inside(dir: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path);
    let stays = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    stays.then(|| dir.join(rel))
}

/// The master directory's module `module` (`a.b` is `a/b.star` or `a/b.py`), if it has one.
pub fn local_module(dir: Option<&Path>, module: &str) -> Option<LocalModule> {
    let dir = dir?;
    let stem = module.replace('.', "/");
    ["star", "py"].iter().find_map(|ext| {
        let file = format!("{stem}.{ext}");
        let path = inside(dir, &file)?;
        let source = std::fs::read_to_string(path).ok()?;
        Some(LocalModule {
            file,
            names: public_names(&source),
        })
    })
}

impl FileLoader for DirLoader<'_> {
    fn load(&self, path: &str) -> starlark::Result<FrozenModule> {
        let fail = |message: String| starlark::Error::new_other(anyhow::anyhow!(message));
        let Some(dir) = self.dir else {
            return Err(fail(format!(
                "load({path:?}): only a configuration read from a master directory can load files"
            )));
        };
        let Some(file) = inside(dir, path) else {
            return Err(fail(format!(
                "load({path:?}): only files inside the master directory can be loaded"
            )));
        };
        {
            let loading = self.loading.borrow();
            if loading.iter().any(|p| p == path) {
                let chain = loading.join(" -> ");
                return Err(fail(format!(
                    "load({path:?}): a cycle of loads: {chain} -> {path}"
                )));
            }
            if loading.len() >= MAX_LOAD_DEPTH {
                return Err(fail(format!(
                    "load({path:?}): loads nest deeper than {MAX_LOAD_DEPTH}"
                )));
            }
        }
        let source = std::fs::read_to_string(&file).map_err(|e| {
            fail(format!(
                "load({path:?}): cannot read {}: {e}",
                file.display()
            ))
        })?;
        let name = file.display().to_string();
        let translated = translate(&source, &|module| local_module(self.dir, module));
        if let Some(e) = translated.errors.first() {
            return Err(fail(format!(
                "{name}:{}:{}: {}",
                e.line, e.column, e.message
            )));
        }
        let ast = AstModule::parse(&name, translated.source, &dialect())?;
        self.loading.borrow_mut().push(path.to_string());
        let result = Module::with_temp_heap(|module| {
            module.import_public_symbols(self.prelude);
            {
                let mut eval = Evaluator::new(&module);
                let started = self.started;
                eval.set_check_cancelled(Box::new(move || started.elapsed() > EVAL_TIME_LIMIT));
                eval.set_loader(self);
                eval.eval_module(ast, self.globals)?;
            }
            module
                .freeze()
                .map_err(|e| fail(format!("load({path:?}): {e:?}")))
        });
        self.loading.borrow_mut().pop();
        result
    }
}
