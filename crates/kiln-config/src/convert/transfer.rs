//! The file transfer steps in the configuration: uploads to the master and downloads to the
//! worker.

use super::Cx;
use super::steps::StepNode;
use crate::model::*;
use crate::node::{Location, Node};

/// The step kinds read here.
pub(super) const KINDS: [&str; 7] = [
    "FileUpload",
    "DirectoryUpload",
    "MultipleFileUpload",
    "FileDownload",
    "StringDownload",
    "JSONStringDownload",
    "JSONPropertiesDownload",
];

/// The largest transfer block: a block travels in one protocol frame, which the master bounds.
const MAX_BLOCKSIZE: u64 = 4 << 20;

/// The block size a file upload uses when none is given, as in Buildbot.
const FILE_UPLOAD_BLOCKSIZE: u64 = 262_144;

/// The block size of every other transfer when none is given, as in Buildbot.
const BLOCKSIZE: u64 = 16_384;

pub(super) fn transfer(cx: &mut Cx, s: &StepNode) -> Option<StepKind> {
    Some(match s.kind {
        "FileUpload" => StepKind::FileUpload {
            workersrc: s.required(cx, "workersrc")?,
            masterdest: s.required(cx, "masterdest")?,
            mode: mode(cx, s),
            maxsize: size(cx, s, "maxsize"),
            blocksize: size(cx, s, "blocksize").unwrap_or(FILE_UPLOAD_BLOCKSIZE),
            keepstamp: s.boolean(cx, "keepstamp", false),
            url: s.string(cx, "url"),
            url_text: s.string(cx, "urlText"),
        },
        "DirectoryUpload" => StepKind::DirectoryUpload {
            workersrc: s.required(cx, "workersrc")?,
            masterdest: s.required(cx, "masterdest")?,
            maxsize: size(cx, s, "maxsize"),
            blocksize: size(cx, s, "blocksize").unwrap_or(BLOCKSIZE),
            compress: compress(cx, s.field("compress"), s.loc),
        },
        "MultipleFileUpload" => StepKind::MultipleFileUpload(Box::new(MultipleFileUploadConfig {
            workersrcs: s.required(cx, "workersrcs")?,
            masterdest: s.required(cx, "masterdest")?,
            maxsize: size(cx, s, "maxsize"),
            blocksize: size(cx, s, "blocksize").unwrap_or(BLOCKSIZE),
            mode: mode(cx, s),
            keepstamp: s.boolean(cx, "keepstamp", false),
            glob: s.boolean(cx, "glob", false),
            compress: compress(cx, s.field("compress"), s.loc),
            url: s.string(cx, "url"),
            url_text: s.string(cx, "urlText"),
        })),
        "FileDownload" => StepKind::FileDownload {
            mastersrc: s.required(cx, "mastersrc")?,
            workerdest: s.required(cx, "workerdest")?,
            mode: mode(cx, s),
            maxsize: size(cx, s, "maxsize"),
            blocksize: size(cx, s, "blocksize").unwrap_or(BLOCKSIZE),
        },
        "StringDownload" => StepKind::StringDownload {
            s: s.required(cx, "s")?,
            workerdest: s.required(cx, "workerdest")?,
            mode: mode(cx, s),
            maxsize: size(cx, s, "maxsize"),
            blocksize: size(cx, s, "blocksize").unwrap_or(BLOCKSIZE),
        },
        kind => StepKind::JsonDownload {
            value: if kind == "JSONStringDownload" {
                Some(s.required(cx, "o")?)
            } else {
                None
            },
            workerdest: s.required(cx, "workerdest")?,
            mode: mode(cx, s),
            maxsize: size(cx, s, "maxsize"),
            blocksize: size(cx, s, "blocksize").unwrap_or(BLOCKSIZE),
        },
    })
}

/// A size in bytes (`maxsize`, `blocksize`); a block must fit in one protocol frame.
fn size(cx: &mut Cx, s: &StepNode, field: &str) -> Option<u64> {
    let v = s
        .number(cx, field)
        .and_then(|v| (v >= 0.0).then_some(v as u64));
    if field == "blocksize" && v.is_some_and(|b| b == 0 || b > MAX_BLOCKSIZE) {
        cx.error(
            s.loc,
            format!("blocksize must be between 1 and {MAX_BLOCKSIZE} bytes"),
        );
        return None;
    }
    v
}

/// The file mode a transferred file is given.
fn mode(cx: &mut Cx, s: &StepNode) -> Option<u32> {
    s.number(cx, "mode").map(|m| m as u32)
}

/// `compress` of a directory upload: `None`, `'gz'` or `'bz2'`.
fn compress(cx: &mut Cx, node: Option<&Node>, loc: &Location) -> Option<String> {
    match cx.opt_string(node, "compress", loc) {
        Some(c) if c == "gz" || c == "bz2" => Some(c),
        Some(c) => {
            cx.error(
                loc,
                format!("compress must be None, 'gz' or 'bz2', not '{c}'"),
            );
            None
        }
        None => None,
    }
}
