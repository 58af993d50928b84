//! `c['secretsProviders']`: where `%(secret:name)s` finds its values.

use super::Cx;
use crate::model::*;
use crate::node::Node;

pub(super) fn providers(cx: &mut Cx, node: Option<&Node>) -> Vec<SecretProvider> {
    let loc = cx.key_loc("secretsProviders");
    let items = match node {
        None | Some(Node::None) => return Vec::new(),
        Some(Node::List(items)) => items.as_slice(),
        Some(other) => {
            cx.error(
                &loc,
                format!(
                    "c['secretsProviders'] must be a list, not {}",
                    other.describe()
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Node::Object { kind, loc, .. } = item else {
            cx.error(
                &loc,
                format!(
                    "c['secretsProviders'] must hold secret providers, not {}",
                    item.describe()
                ),
            );
            continue;
        };
        let text = |cx: &mut Cx, key: &str| cx.opt_string(item.field(key), key, loc);
        match kind.as_str() {
            "SecretInAFile" => match text(cx, "dirname") {
                Some(dir) => out.push(SecretProvider::Directory {
                    dir,
                    strip: cx.boolean(item.field("strip"), true, "strip", loc),
                    suffixes: cx.strings(item.field("suffixes"), "suffixes", loc),
                }),
                None => cx.error(loc, "SecretInAFile needs a dirname"),
            },
            "SecretInEnvironment" => out.push(SecretProvider::Environment {
                prefix: text(cx, "prefix").unwrap_or_default(),
            }),
            "SecretInKeyValueFile" => match text(cx, "path") {
                Some(path) => out.push(SecretProvider::KeyValueFile { path }),
                None => cx.error(loc, "SecretInKeyValueFile needs a path"),
            },
            other => cx.error(
                loc,
                format!("{other} is not a secret provider kiln knows (SecretInAFile, SecretInEnvironment, SecretInKeyValueFile)"),
            ),
        }
    }
    out
}
