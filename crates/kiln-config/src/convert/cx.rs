//! The context in which a configuration is read: the diagnostics collected so far, where each
//! top-level key was assigned, and the typed readers (a string, a port, properties, a renderable,
//! …) that report a value of the wrong kind at its location instead of stopping.

use std::collections::BTreeMap;

use kiln_core::PropertyValue;
use kiln_core::render::Renderable;

use crate::Diagnostic;
use crate::model::{Listen, TlsFiles};
use crate::node::{Location, Node};

pub(crate) struct Cx<'a> {
    pub(crate) file: &'a str,
    pub(crate) diags: Vec<Diagnostic>,
    /// Where each top-level key is first assigned, found in the source text.
    pub(crate) key_lines: BTreeMap<String, Location>,
}

impl Cx<'_> {
    pub(crate) fn error(&mut self, loc: &Location, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(loc.clone(), msg.into()));
    }
    pub(crate) fn warn(&mut self, loc: &Location, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(loc.clone(), msg.into()));
    }
    pub(crate) fn key_loc(&self, key: &str) -> Location {
        self.key_lines.get(key).cloned().unwrap_or(Location {
            file: self.file.to_string(),
            line: 1,
            column: 1,
        })
    }

    pub(crate) fn string(&mut self, node: &Node, what: &str, loc: &Location) -> Option<String> {
        match node {
            Node::Str(s) => Some(s.clone()),
            other => {
                self.error(
                    loc,
                    format!("{what} must be a string, not {}", other.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn opt_string(
        &mut self,
        node: Option<&Node>,
        what: &str,
        loc: &Location,
    ) -> Option<String> {
        match node {
            None | Some(Node::None) => None,
            Some(n) => self.string(n, what, loc),
        }
    }

    pub(crate) fn int(&mut self, node: &Node, what: &str, loc: &Location) -> Option<i64> {
        match node {
            Node::Int(i) => Some(*i),
            other => {
                self.error(
                    loc,
                    format!("{what} must be an int, not {}", other.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn number(
        &mut self,
        node: Option<&Node>,
        what: &str,
        loc: &Location,
    ) -> Option<f64> {
        match node {
            None | Some(Node::None) => None,
            Some(Node::Int(i)) => Some(*i as f64),
            Some(Node::Float(f)) => Some(*f),
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be a number, not {}", other.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn boolean(
        &mut self,
        node: Option<&Node>,
        default: bool,
        what: &str,
        loc: &Location,
    ) -> bool {
        match node {
            None | Some(Node::None) => default,
            Some(Node::Bool(b)) => *b,
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be True or False, not {}", other.describe()),
                );
                default
            }
        }
    }

    pub(crate) fn strings(
        &mut self,
        node: Option<&Node>,
        what: &str,
        loc: &Location,
    ) -> Vec<String> {
        match node {
            None | Some(Node::None) => Vec::new(),
            Some(Node::List(items)) => items
                .iter()
                .filter_map(|i| self.string(i, what, loc))
                .collect(),
            Some(Node::Str(s)) => vec![s.clone()],
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be a list of strings, not {}", other.describe()),
                );
                Vec::new()
            }
        }
    }

    /// A port to listen on, in Buildbot's forms (`9989`, `"9989"`, `"tcp:9989"`,
    /// `"tcp:port=9989:interface=127.0.0.1"`) or kiln's (`"127.0.0.1:9989"`, `"[::1]:9989"`):
    /// the port, and the address to bind when one is named. Anything else is an error, so that
    /// a port is never bound somewhere its configuration did not say.
    pub(crate) fn listen(&mut self, node: &Node, what: &str, loc: &Location) -> Option<Listen> {
        let parsed = match node {
            Node::Int(i) => u16::try_from(*i)
                .map(Listen::port)
                .map_err(|_| format!("{i} is not a port number")),
            Node::Str(s) => parse_listen(s),
            other => Err(format!("not {}", other.describe())),
        };
        match parsed {
            Ok(l) => Some(l),
            Err(why) => {
                self.error(
                    loc,
                    format!(
                        "{what} must be a port number, \"tcp:PORT[:interface=ADDRESS]\", \"ssl:PORT:privateKey=KEY:certKey=CERT\" or \"ADDRESS:PORT\": {why}"
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn value(&mut self, node: &Node, what: &str, loc: &Location) -> PropertyValue {
        match node {
            Node::None => PropertyValue::Null,
            Node::Bool(b) => PropertyValue::Bool(*b),
            Node::Int(i) => PropertyValue::Int(*i),
            Node::Float(f) => PropertyValue::Float(*f),
            Node::Str(s) => PropertyValue::Str(s.clone()),
            Node::List(items) => {
                PropertyValue::List(items.iter().map(|i| self.value(i, what, loc)).collect())
            }
            Node::Dict(entries) => {
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    if let Some(k) = self.string(k, &format!("a key of {what}"), loc) {
                        let v = self.value(v, what, loc);
                        map.insert(k, v);
                    }
                }
                PropertyValue::Map(map)
            }
            other => {
                self.error(
                    loc,
                    format!("{what} must be plain data, not {}", other.describe()),
                );
                PropertyValue::Null
            }
        }
    }

    pub(crate) fn properties(
        &mut self,
        node: Option<&Node>,
        what: &str,
        loc: &Location,
    ) -> BTreeMap<String, PropertyValue> {
        match node {
            None | Some(Node::None) => BTreeMap::new(),
            Some(n @ Node::Dict(_)) => match self.value(n, what, loc) {
                PropertyValue::Map(m) => m,
                _ => BTreeMap::new(),
            },
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be a dict, not {}", other.describe()),
                );
                BTreeMap::new()
            }
        }
    }

    pub(crate) fn renderable(&mut self, node: &Node, what: &str, loc: &Location) -> Renderable {
        match node {
            Node::List(items) => Renderable::List(
                items
                    .iter()
                    .map(|i| self.renderable(i, what, loc))
                    .collect(),
            ),
            Node::Dict(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    if let Some(k) = self.string(k, &format!("a key of {what}"), loc) {
                        let v = self.renderable(v, what, loc);
                        out.push((k, v));
                    }
                }
                Renderable::Map(out)
            }
            Node::Object { kind, loc: at, .. } if kind == "Property" => {
                let name = node
                    .field("key")
                    .and_then(|n| self.string(n, "Property's name", at))
                    .unwrap_or_default();
                let default = node
                    .field("default")
                    .map(|d| Box::new(self.renderable(d, what, at)));
                let default_when_false = self.boolean(
                    node.field("defaultWhenFalse"),
                    false,
                    "defaultWhenFalse",
                    at,
                );
                Renderable::Property {
                    name,
                    default,
                    default_when_false,
                }
            }
            Node::Object {
                kind,
                loc: at,
                fields,
            } if kind == "Interpolate" => {
                let format = node
                    .field("fmtstring")
                    .and_then(|n| self.string(n, "Interpolate's format", at))
                    .unwrap_or_default();
                let kwargs = fields
                    .iter()
                    .filter(|(k, _)| k != "fmtstring")
                    .map(|(k, v)| (k.clone(), self.renderable(v, what, at)))
                    .collect();
                Renderable::Interpolate { format, kwargs }
            }
            Node::Object { kind, loc: at, .. } if kind == "Renderer" => {
                match (node.field("call"), node.field("func")) {
                    (Some(Node::Function(call, _)), Some(Node::Function(func, _))) => {
                        Renderable::Renderer {
                            call: *call,
                            func: *func,
                        }
                    }
                    (_, other) => {
                        self.error(
                            at,
                            format!(
                                "util.renderer takes a function, not {}",
                                other.map_or("nothing".into(), Node::describe)
                            ),
                        );
                        Renderable::Literal(PropertyValue::Null)
                    }
                }
            }
            Node::Object { kind, loc: at, .. } if kind == "Transform" => {
                let Some(Node::Function(func, _)) = node.field("func") else {
                    self.error(at, "util.Transform takes a function first");
                    return Renderable::Literal(PropertyValue::Null);
                };
                let args = match node.field("args") {
                    Some(Node::List(items)) => {
                        items.iter().map(|a| self.renderable(a, what, at)).collect()
                    }
                    _ => Vec::new(),
                };
                let kwargs = match node.field("kwargs") {
                    Some(Node::Dict(entries)) => entries
                        .iter()
                        .filter_map(|(k, v)| {
                            let k = self.string(k, "a keyword of util.Transform", at)?;
                            Some((k, self.renderable(v, what, at)))
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                Renderable::Transform {
                    func: *func,
                    args,
                    kwargs,
                }
            }
            Node::Object { kind, loc: at, .. } if kind == "FlattenList" => {
                let inner = node
                    .field("nestedlist")
                    .map(|n| self.renderable(n, what, at))
                    .unwrap_or(Renderable::List(Vec::new()));
                Renderable::FlattenList(Box::new(inner))
            }
            other => Renderable::Literal(self.value(other, what, loc)),
        }
    }
}

pub(crate) fn lookup<'n>(entries: &'n [(Node, Node)], key: &str) -> Option<&'n Node> {
    entries
        .iter()
        .find(|(k, _)| matches!(k, Node::Str(s) if s == key))
        .map(|(_, v)| v)
}

/// Finds where `c['key']` / `BuildmasterConfig["key"]` is first assigned, for messages about plain
/// values that carry no location of their own.
pub(crate) fn key_lines(file: &str, source: &str) -> BTreeMap<String, Location> {
    let mut out = BTreeMap::new();
    for (n, line) in source.lines().enumerate() {
        for quote in ['\'', '"'] {
            let mut rest = line;
            while let Some(i) = rest.find(&format!("[{quote}")) {
                let after = &rest[i + 2..];
                if let Some(end) = after.find(&format!("{quote}]")) {
                    let key = &after[..end];
                    let column = line.len() - rest.len() + i + 1;
                    out.entry(key.to_string()).or_insert(Location {
                        file: file.to_string(),
                        line: n + 1,
                        column,
                    });
                }
                rest = after;
            }
        }
    }
    out
}

/// A listening address in one of the forms [`Cx::listen`] takes.
fn parse_listen(text: &str) -> Result<Listen, String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    let address = |a: &str| {
        a.parse::<std::net::IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("{a:?} is not an IP address"))
    };
    if let Ok(p) = text.parse::<u16>() {
        return Ok(Listen::port(p));
    }
    let (tls, rest) = match (text.strip_prefix("tcp:"), text.strip_prefix("ssl:")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return match text.parse::<std::net::SocketAddr>() {
                Ok(socket) => Ok(Listen {
                    interface: Some(socket.ip().to_string()),
                    ..Listen::port(socket.port())
                }),
                Err(_) => Err(format!(
                    "{text:?} is not a listening address kiln understands"
                )),
            };
        }
    };
    let mut number = None;
    let mut interface = None;
    let mut key = None;
    let mut cert = None;
    let parts = strport_parts(rest);
    for (i, part) in parts.iter().enumerate() {
        match part.split_once('=') {
            None if i == 0 => number = Some(port(part)?),
            Some(("port", p)) => number = Some(port(p)?),
            Some(("interface", a)) => {
                // An IPv6 address has colons of its own: Twisted escapes them (`\:\:1`);
                // written plainly, a last `interface=` takes the rest of the text.
                match address(a) {
                    Ok(ip) => interface = Some(ip),
                    Err(e) if i + 1 == parts.len() => return Err(e),
                    Err(e) => match address(&format!("{a}:{}", parts[i + 1..].join(":"))) {
                        Ok(ip) => {
                            interface = Some(ip);
                            break;
                        }
                        Err(_) => return Err(e),
                    },
                }
            }
            // How many connections may wait to be accepted: the system's default serves.
            Some(("backlog", b)) if b.parse::<u32>().is_ok() => {}
            Some(("privateKey", k)) if tls && !k.is_empty() => key = Some(k.to_string()),
            Some(("certKey", c)) if tls && !c.is_empty() => cert = Some(c.to_string()),
            _ => {
                return Err(format!(
                    "{part:?} in {text:?} is not something kiln understands"
                ));
            }
        }
    }
    let Some(number) = number else {
        return Err(format!("{text:?} names no port"));
    };
    let tls = if tls {
        // As in Twisted, the certificate may be in the key's file.
        let key = key.ok_or_else(|| format!("{text:?} needs privateKey=, the key's PEM file"))?;
        Some(TlsFiles {
            cert: cert.unwrap_or_else(|| key.clone()).into(),
            key: key.into(),
        })
    } else {
        None
    };
    Ok(Listen {
        port: number,
        interface,
        tls,
    })
}

/// A strport's `:`-separated parts, with `\:` standing for a colon inside a part.
fn strport_parts(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), parts.last_mut()) {
                    last.push(next);
                }
            }
            ':' => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

#[cfg(test)]
mod listen_tests {
    use super::{TlsFiles, parse_listen};

    #[test]
    fn an_ssl_port_names_its_key_and_certificate() {
        let l =
            parse_listen("ssl:8443:privateKey=k.pem:certKey=c.pem:interface=127.0.0.1").unwrap();
        assert_eq!((l.port, l.interface.as_deref()), (8443, Some("127.0.0.1")));
        assert_eq!(
            l.tls,
            Some(TlsFiles {
                key: "k.pem".into(),
                cert: "c.pem".into()
            })
        );
        let both = parse_listen("ssl:port=443:privateKey=both.pem").unwrap();
        assert_eq!(both.tls.unwrap().cert, std::path::PathBuf::from("both.pem"));
    }

    #[test]
    fn listening_addresses_are_read_in_every_form_or_refused() {
        let ok = |t: &str| {
            let l = parse_listen(t).unwrap();
            assert!(l.tls.is_none(), "{t}");
            (l.port, l.interface)
        };
        assert_eq!(ok("9989"), (9989, None));
        assert_eq!(ok("tcp:9989"), (9989, None));
        assert_eq!(
            ok("tcp:port=9989:interface=127.0.0.1"),
            (9989, Some("127.0.0.1".into()))
        );
        assert_eq!(ok("tcp:8010:interface=::1"), (8010, Some("::1".into())));
        assert_eq!(
            ok(r"tcp:8010:interface=\:\:1:backlog=5"),
            (8010, Some("::1".into()))
        );
        assert_eq!(ok("tcp:9989:backlog=50"), (9989, None));
        assert_eq!(ok("10.0.0.5:9989"), (9989, Some("10.0.0.5".into())));
        assert_eq!(ok("[::1]:9989"), (9989, Some("::1".into())));
        for bad in [
            "tcp:9989:interface=localhost",
            "tcp:9989:iface=127.0.0.1",
            "ssl:9989",
            "ssl:443:certKey=c.pem",
            "tcp:443:privateKey=k.pem",
            "unix:/tmp/sock",
            "tcp:",
            "tcp:99999",
            "localhost:9989",
            "",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }
}
