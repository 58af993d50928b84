//! Filesystem commands: `mkdir`, `rmdir`, `cpdir`, `stat`, `glob`, `listdir`, `rmfile`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_proto::{ArgError, Args, Value};

use super::{Ctx, elapsed, header, rc};

pub enum FsCommand {
    Mkdir { paths: Vec<String> },
    Rmdir { paths: Vec<String> },
    Cpdir { from: String, to: String },
    Stat { path: String },
    Glob { pattern: String },
    Listdir { path: String },
    Rmfile { path: String },
}

impl FsCommand {
    pub fn parse(name: &str, args: &Args) -> Result<FsCommand, ArgError> {
        Ok(match name {
            "mkdir" => FsCommand::Mkdir {
                paths: args.str_list("paths")?,
            },
            "rmdir" => FsCommand::Rmdir {
                paths: args.str_list("paths")?,
            },
            "cpdir" => FsCommand::Cpdir {
                from: args.str("from_path")?,
                to: args.str("to_path")?,
            },
            "stat" => FsCommand::Stat {
                path: args.str("path")?,
            },
            "glob" => FsCommand::Glob {
                pattern: args.str("path")?,
            },
            "listdir" => FsCommand::Listdir {
                path: args.str("path")?,
            },
            _ => FsCommand::Rmfile {
                path: args.str("path")?,
            },
        })
    }
}

pub async fn run(cmd: FsCommand, ctx: &Ctx) -> Result<(), String> {
    let started = Instant::now();
    let mut updates = Vec::new();
    let code = match cmd {
        FsCommand::Mkdir { paths } => {
            let mut code = 0;
            for p in paths {
                if let Err(e) = std::fs::create_dir_all(ctx.path(&p)) {
                    updates.push(header(&format!("mkdir {p}: {e}\n")));
                    code = 1;
                }
            }
            code
        }
        FsCommand::Rmdir { paths } => {
            let mut code = 0;
            for p in paths {
                let path = ctx.path(&p);
                updates.push(header(&format!("rm -rf {}\n", path.display())));
                let path2 = path.clone();
                let result = tokio::task::spawn_blocking(move || remove_tree(&path2))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                if let Err(e) = result {
                    updates.push(header(&format!("rm -rf {}: {e}\n", path.display())));
                    code = 1;
                }
            }
            code
        }
        FsCommand::Cpdir { from, to } => {
            let (from, to) = (ctx.path(&from), ctx.path(&to));
            updates.push(header(&format!(
                "cp -R -P -p {} {}\n",
                from.display(),
                to.display()
            )));
            let (f, t) = (from.clone(), to.clone());
            let result = tokio::task::spawn_blocking(move || copy_tree(&f, &t))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            match result {
                Ok(()) => 0,
                Err(e) => {
                    updates.push(header(&format!(
                        "cpdir {} {}: {e}\n",
                        from.display(),
                        to.display()
                    )));
                    1
                }
            }
        }
        FsCommand::Stat { path } => match std::fs::symlink_metadata(ctx.path(&path))
            .and_then(|_| std::fs::metadata(ctx.path(&path)))
        {
            Ok(m) => {
                let tuple = vec![
                    Value::from(m.mode()),
                    Value::from(m.ino()),
                    Value::from(m.dev()),
                    Value::from(m.nlink()),
                    Value::from(m.uid()),
                    Value::from(m.gid()),
                    Value::from(m.size()),
                    Value::from(m.atime()),
                    Value::from(m.mtime()),
                    Value::from(m.ctime()),
                ];
                updates.push(("stat".to_string(), Value::Array(tuple)));
                0
            }
            Err(e) => {
                updates.push(header(&format!("stat {path}: {e}\n")));
                1
            }
        },
        FsCommand::Glob { pattern } => {
            let pattern = ctx.path(&pattern).display().to_string();
            match glob::glob(&pattern) {
                Ok(paths) => {
                    let files: Vec<Value> = paths
                        .flatten()
                        .map(|p| Value::from(p.display().to_string()))
                        .collect();
                    updates.push(("files".to_string(), Value::Array(files)));
                    0
                }
                Err(e) => {
                    updates.push(header(&format!("glob {pattern}: {e}\n")));
                    1
                }
            }
        }
        FsCommand::Listdir { path } => match std::fs::read_dir(ctx.path(&path)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                updates.push((
                    "files".to_string(),
                    Value::Array(names.into_iter().map(Value::from).collect()),
                ));
                0
            }
            Err(e) => {
                updates.push(header(&format!("listdir {path}: {e}\n")));
                1
            }
        },
        FsCommand::Rmfile { path } => match std::fs::remove_file(ctx.path(&path)) {
            Ok(()) => 0,
            Err(e) => {
                updates.push(header(&format!("rmfile {path}: {e}\n")));
                1
            }
        },
    };
    updates.push(rc(code));
    updates.push(elapsed(started.elapsed().as_secs_f64()));
    ctx.update(updates).await
}

/// `rm -rf`: a missing path is not an error.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    }
}

/// Copies a tree, keeping symbolic links as links and file permissions.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&src)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src)?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(target, &dst)?;
        } else if meta.is_dir() {
            std::fs::create_dir_all(&dst)?;
            std::fs::set_permissions(&dst, meta.permissions())?;
            for entry in std::fs::read_dir(&src)? {
                let entry = entry?;
                stack.push((entry.path(), dst.join(entry.file_name())));
            }
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
