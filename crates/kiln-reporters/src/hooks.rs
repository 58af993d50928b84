//! What a reporter's renderables may use: the configured secret providers, whose values are
//! remembered so that no message or log line shows them, and the configuration's functions.

use std::sync::{Arc, Mutex};

use kiln_api::ReadSide;
use kiln_core::changefilter::FnRef;
use kiln_core::render::RenderHooks;
use kiln_core::{Properties, PropertyValue};

/// The hooks of one reporter.
pub struct Hooks {
    read: Arc<dyn ReadSide>,
    /// Every secret value this reporter has read.
    secrets: Mutex<Vec<String>>,
}

impl Hooks {
    pub fn new(read: Arc<dyn ReadSide>) -> Hooks {
        Hooks {
            read,
            secrets: Mutex::new(Vec::new()),
        }
    }

    /// A reporter's own renderable (a password, a header) as text: it has no build's properties,
    /// only secrets and functions.
    pub fn render(&self, r: &kiln_core::render::Renderable) -> Result<String, String> {
        r.render_in(&kiln_core::render::RenderContext {
            props: &Default::default(),
            sourcestamps: &[],
            worker: &Default::default(),
            hooks: self,
        })
        .map(|v| v.render())
        .map_err(|e| e.0)
    }

    /// `text` with every secret this reporter has read replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = text.to_string();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }
}

impl RenderHooks for Hooks {
    fn secret(&self, name: &str) -> Result<String, String> {
        let value = self.read.secret(name)?;
        let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        if !secrets.contains(&value) {
            secrets.push(value.clone());
        }
        Ok(value)
    }

    fn call(
        &self,
        f: FnRef,
        args: Vec<PropertyValue>,
        kwargs: Vec<(String, PropertyValue)>,
    ) -> Result<PropertyValue, String> {
        let config = self.read.config();
        RenderHooks::call(&config.functions, f, args, kwargs)
    }

    fn call_renderer(
        &self,
        call: FnRef,
        func: FnRef,
        props: &Properties,
    ) -> Result<PropertyValue, String> {
        self.read
            .config()
            .functions
            .call_renderer(call, func, props)
    }
}
