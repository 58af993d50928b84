//! Remote commands as a PB worker expects them: Buildbot's command names and argument names, and
//! values converted between MessagePack (what the rest of the master speaks) and Jelly.
//!
//! The master builds every command in the `msgpack_experimental_v7` form, with full paths on the
//! worker. A PB worker takes the older form, with paths relative to the builder's directory; it
//! joins them with Python's `os.path.join`, which keeps a full path as it is, so full paths are sent
//! under the older names.

use kiln_proto::Value;
use kiln_proto::pb::Jelly;

/// The largest block a PB transfer moves at once: Banana refuses strings over 640 KiB on either
/// side, and Buildbot's `FileUpload` uses this size.
pub const MAX_BLOCK: u64 = 256 * 1024;

/// The remote object a transfer command needs beside its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// The worker writes a file (or, with `directory`, a tar archive) to the master.
    Writer { directory: bool },
    /// The worker reads a file from the master.
    Reader,
}

/// A command translated for a PB worker.
#[derive(Debug, PartialEq)]
pub struct PbCommand {
    pub name: &'static str,
    pub args: Vec<(String, Jelly)>,
    /// The argument (`writer` or `reader`) that must name a transfer object, if any.
    pub transfer: Option<(&'static str, Transfer)>,
}

/// Translates `name` with its msgpack arguments into the PB command Buildbot's master would send.
pub fn translate(name: &str, args: Value) -> Result<PbCommand, String> {
    let mut args: Vec<(String, Value)> = match args {
        Value::Map(entries) => entries
            .into_iter()
            .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v)))
            .collect(),
        _ => return Err(format!("the arguments of {name} are not a map")),
    };
    fn rename(args: &mut [(String, Value)], from: &str, to: &str) {
        if let Some(entry) = args.iter_mut().find(|(k, _)| k == from) {
            entry.0 = to.to_string();
        }
    }
    let (pb_name, transfer) = match name {
        "shell" => ("shell", None),
        "mkdir" => {
            rename(&mut args, "paths", "dir");
            ("mkdir", None)
        }
        "rmdir" => {
            rename(&mut args, "paths", "dir");
            ("rmdir", None)
        }
        "cpdir" => {
            rename(&mut args, "from_path", "fromdir");
            rename(&mut args, "to_path", "todir");
            ("cpdir", None)
        }
        "stat" => {
            rename(&mut args, "path", "file");
            ("stat", None)
        }
        "glob" => ("glob", None),
        "listdir" => {
            rename(&mut args, "path", "dir");
            ("listdir", None)
        }
        "rmfile" => ("rmfile", None),
        "upload_file" | "upload_directory" => {
            args.retain(|(k, _)| k != "workersrc");
            rename(&mut args, "path", "workersrc");
            let directory = name == "upload_directory";
            let pb = if directory {
                "uploadDirectory"
            } else {
                "uploadFile"
            };
            (pb, Some(("writer", Transfer::Writer { directory })))
        }
        "download_file" => {
            args.retain(|(k, _)| k != "workerdest");
            rename(&mut args, "path", "workerdest");
            ("downloadFile", Some(("reader", Transfer::Reader)))
        }
        other => return Err(format!("unrecognized WorkerCommand '{other}'")),
    };
    let mut out: Vec<(String, Jelly)> = Vec::with_capacity(args.len() + 1);
    for (key, value) in args {
        let value = match (pb_name, key.as_str(), value) {
            // PB's mkdir makes one directory.
            ("mkdir", "dir", Value::Array(mut paths)) => match paths.len() {
                1 => paths.remove(0),
                n => return Err(format!("mkdir of {n} directories at once")),
            },
            (_, "blocksize", v) => Value::from(v.as_u64().unwrap_or(MAX_BLOCK).min(MAX_BLOCK)),
            (_, _, v) => v,
        };
        out.push((key, to_jelly(&value)));
    }
    Ok(PbCommand {
        name: pb_name,
        args: out,
        transfer,
    })
}

/// A MessagePack value as Jelly: text as `str`, bytes as bytes.
pub fn to_jelly(value: &Value) -> Jelly {
    match value {
        Value::Nil | Value::Ext(..) => Jelly::None,
        Value::Boolean(b) => Jelly::Bool(*b),
        Value::Integer(i) => match i.as_i64() {
            Some(i) => Jelly::Int(i),
            None => Jelly::Float(i.as_f64().unwrap_or(f64::MAX)),
        },
        Value::F32(f) => Jelly::Float(f64::from(*f)),
        Value::F64(f) => Jelly::Float(*f),
        Value::String(s) => match s.as_str() {
            Some(text) => Jelly::str(text),
            None => Jelly::Bytes(s.as_bytes().to_vec()),
        },
        Value::Binary(b) => Jelly::Bytes(b.clone()),
        Value::Array(items) => Jelly::List(items.iter().map(to_jelly).collect()),
        Value::Map(entries) => Jelly::Dict(
            entries
                .iter()
                .map(|(k, v)| (to_jelly(k), to_jelly(v)))
                .collect(),
        ),
    }
}

/// A Jelly value as MessagePack: tuples become arrays, a failure its description, and a remote
/// reference nil.
pub fn to_value(value: Jelly) -> Value {
    match value {
        Jelly::None | Jelly::Remote(_) | Jelly::Local(_) => Value::Nil,
        Jelly::Bool(b) => Value::Boolean(b),
        Jelly::Int(i) => Value::from(i),
        Jelly::Float(f) => Value::F64(f),
        Jelly::Bytes(b) => Value::Binary(b),
        Jelly::Str(s) => Value::from(s),
        Jelly::List(items) | Jelly::Tuple(items) => {
            Value::Array(items.into_iter().map(to_value).collect())
        }
        Jelly::Dict(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (to_value(k), to_value(v)))
                .collect(),
        ),
        Jelly::Failure(f) => Value::from(f.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        )
    }

    fn arg<'a>(c: &'a PbCommand, key: &str) -> Option<&'a Jelly> {
        c.args.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    #[test]
    fn commands_take_buildbot_names_and_full_paths() {
        let up = translate(
            "upload_file",
            map(&[
                ("workdir", Value::from("build")),
                ("workersrc", Value::from("/w/b1/build/out.bin")),
                ("path", Value::from("/w/b1/build/out.bin")),
                ("blocksize", Value::from(4u64 << 20)),
                ("maxsize", Value::Nil),
                ("keepstamp", Value::Boolean(true)),
            ]),
        )
        .unwrap();
        assert_eq!(up.name, "uploadFile");
        assert_eq!(
            arg(&up, "workersrc"),
            Some(&Jelly::str("/w/b1/build/out.bin"))
        );
        assert_eq!(arg(&up, "path"), None);
        assert_eq!(arg(&up, "blocksize"), Some(&Jelly::Int(MAX_BLOCK as i64)));
        assert_eq!(
            up.transfer,
            Some(("writer", Transfer::Writer { directory: false }))
        );
        let mkdir = translate(
            "mkdir",
            map(&[("paths", Value::Array(vec![Value::from("/w/d")]))]),
        )
        .unwrap();
        assert_eq!(arg(&mkdir, "dir"), Some(&Jelly::str("/w/d")));
        let two = map(&[(
            "paths",
            Value::Array(vec![Value::from("/a"), Value::from("/b")]),
        )]);
        assert!(translate("mkdir", two.clone()).is_err());
        let rmdir = translate("rmdir", two).unwrap();
        assert_eq!(
            arg(&rmdir, "dir"),
            Some(&Jelly::List(vec![Jelly::str("/a"), Jelly::str("/b")]))
        );
        let stat = translate("stat", map(&[("path", Value::from("/w/f"))])).unwrap();
        assert_eq!(arg(&stat, "file"), Some(&Jelly::str("/w/f")));
        let down = translate(
            "download_file",
            map(&[
                ("workerdest", Value::from("x")),
                ("path", Value::from("/w/x")),
            ]),
        )
        .unwrap();
        assert_eq!(
            (down.name, arg(&down, "workerdest")),
            ("downloadFile", Some(&Jelly::str("/w/x")))
        );
        assert!(translate("frobnicate", map(&[])).is_err());
    }
}
