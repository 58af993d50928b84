//! A formatter's context as template values, converted only where a template reads it.
//!
//! A mail's templates read a few dozen fields of a context that holds the whole build dict
//! (its properties, steps and logs, its builder, buildset and request), and a subject reads
//! fewer still. Converting the whole context into template values before each rendering cost
//! more than the rendering itself, so a map or list of the context is shown to the templates as
//! a place in the shared JSON value, and only the scalars a template reaches are converted.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as J};
use serde_json::Value;

/// The template value of a whole context, which it shares.
pub fn context(cx: &Arc<Value>) -> J {
    convert(cx, Vec::new())
}

/// One step from a map or list to what it holds.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// A map or list inside a shared JSON value, found by its path from the root.
#[derive(Debug)]
struct Place {
    root: Arc<Value>,
    path: Vec<Step>,
}

impl Place {
    /// The JSON value at this place; the path was made by walking the same root, so it is
    /// always there.
    fn value(&self) -> &Value {
        let mut v = &*self.root;
        for step in &self.path {
            v = match step {
                Step::Key(k) => v.get(k.as_str()).unwrap_or(&Value::Null),
                Step::Index(i) => v.get(*i).unwrap_or(&Value::Null),
            };
        }
        v
    }

    /// The template value one step further.
    fn child(&self, step: Step) -> J {
        let mut path = self.path.clone();
        path.push(step);
        convert(&self.root, path)
    }
}

/// The template value at `path` in `root`: a scalar converted, a map or list left in place.
/// Numbers are converted here rather than through serde, which may be built to keep them as
/// text (serde_json's arbitrary precision).
fn convert(root: &Arc<Value>, path: Vec<Step>) -> J {
    let place = Place {
        root: root.clone(),
        path,
    };
    match place.value() {
        Value::Null => J::from(()),
        Value::Bool(b) => J::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => J::from(i),
            (None, Some(u), _) => J::from(u),
            (None, None, Some(f)) => J::from(f),
            (None, None, None) => J::from(n.to_string()),
        },
        Value::String(s) => J::from(s.as_str()),
        Value::Array(_) | Value::Object(_) => J::from_object(place),
    }
}

impl Object for Place {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.value() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &J) -> Option<J> {
        match self.value() {
            Value::Array(items) => {
                let i = usize::try_from(key.as_i64()?).ok()?;
                (i < items.len()).then(|| self.child(Step::Index(i)))
            }
            Value::Object(map) => {
                let k = key.as_str()?;
                map.contains_key(k)
                    .then(|| self.child(Step::Key(k.to_string())))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.value() {
            Value::Array(items) => Enumerator::Seq(items.len()),
            Value::Object(map) => {
                Enumerator::Values(map.keys().map(|k| J::from(k.as_str())).collect())
            }
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.value() {
            Value::Array(items) => Some(items.len()),
            Value::Object(map) => Some(map.len()),
            _ => Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;
    use serde_json::json;

    /// The whole value converted at once, as contexts were before.
    fn eager(v: &Value) -> J {
        match v {
            Value::Array(items) => J::from(items.iter().map(eager).collect::<Vec<_>>()),
            Value::Object(map) => J::from_iter(map.iter().map(|(k, v)| (k.clone(), eager(v)))),
            scalar => convert(&Arc::new(scalar.clone()), Vec::new()),
        }
    }

    fn render(source: &str, cx: Value) -> String {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_template("t", source).unwrap();
        env.get_template("t")
            .unwrap()
            .render(context(&Arc::new(cx)))
            .unwrap()
    }

    /// Every way a template reaches into a context gives what the converted context gave:
    /// fields, indexes, loops over lists and maps, lengths, truth, tests, filters and
    /// Python's dict methods.
    #[test]
    fn a_context_read_in_place_renders_as_the_converted_one() {
        let cx = json!({
            "build": {
                "number": 7,
                "ratio": 0.5,
                "big": 18446744073709551615u64,
                "properties": {"branch": ["main", "Force"], "empty": ""},
                "steps": [{"name": "compile", "results": 0}, {"name": "test", "results": 2}],
                "prev_build": null,
                "complete": true,
            },
            "blamelist": [],
        });
        let source = "{{ build.number }} {{ build.ratio }} {{ build.big }} \
            {{ build.steps[1].name }} {{ build.steps|length }} \
            {% for s in build.steps %}{{ loop.index }}:{{ s.name }}={{ s.results }} {% endfor %}\
            {% for k, v in build.properties.items() %}{{ k }}={{ v[0] }};{% endfor %} \
            {{ build.properties.get('branch')[0] }} {{ build.properties.get('nope', 'x') }} \
            {{ 'yes' if blamelist else 'no' }} {{ 'yes' if build.steps else 'no' }} \
            {{ build.prev_build is none }} {{ build.complete }} \
            {{ 'branch' in build.properties }} {{ build.missing is undefined }} \
            {{ build.steps|map(attribute='name')|join(',') }} {{ build.properties|dictsort|first }} \
            {{ build.steps[0]|tojson }} {{ build.steps[5] is undefined }} \
            {{ build.steps[0] }} {{ build.properties }} {{ build.properties.keys()|list }} \
            {{ build.steps|list|length }} {{ build.steps|first }}";
        let converted = {
            let mut env = Environment::new();
            env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            env.add_template("t", source).unwrap();
            env.get_template("t").unwrap().render(eager(&cx)).unwrap()
        };
        let in_place = render(source, cx);
        assert_eq!(in_place, converted);
        assert!(in_place.starts_with("7 0.5 18446744073709551615 test 2 1:compile=0 2:test=2 "));
    }
}
