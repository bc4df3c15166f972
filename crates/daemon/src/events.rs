//! `GET /events`: a broadcast of Docker-shaped event messages plus a short history for
//! `since`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Events kept for `since` queries.
const HISTORY: usize = 1024;

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `image`, `volume`, `container`, ...
    pub kind: &'static str,
    /// `pull`, `tag`, `delete`, ...
    pub action: String,
    /// The actor ID (an image reference or ID, a volume name).
    pub id: String,
    /// Actor attributes (`name`, ...).
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
}

impl Event {
    /// Docker's wire form, with the legacy `status`/`id`/`from` fields.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time_nano / 1_000_000_000,
            "timeNano": self.time_nano,
        });
        if self.kind == "image" || self.kind == "container" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(from) = self.attributes.get("image") {
                v["from"] = json!(from);
            }
        }
        v
    }

    /// Whether the event passes `filters` (`type`, `event`/`action`, `image`, `volume`,
    /// `label`).
    pub fn matches(&self, filters: &crate::http::Filters) -> bool {
        let any = |key: &str, f: &dyn Fn(&str) -> bool| {
            let vals = filters.get(key);
            vals.is_empty() || vals.iter().any(|v| f(v))
        };
        let name = self
            .attributes
            .get("name")
            .map(String::as_str)
            .unwrap_or("");
        any("type", &|v| v == self.kind)
            && any("event", &|v| v == self.action)
            && any("action", &|v| v == self.action)
            && any("image", &|v| {
                self.kind == "image" && (v == self.id || v == name || self.id.starts_with(v))
            })
            && any("volume", &|v| self.kind == "volume" && v == self.id)
            && filters.labels_match(|k| self.attributes.get(k).map(String::as_str))
    }
}

/// The event bus.
pub struct Events {
    tx: broadcast::Sender<Event>,
    recent: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(256).0,
            recent: Mutex::new(VecDeque::new()),
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// The engine's own container events (a policy restart, a health status) go on the bus.
impl skiff_engine::EventHook for Events {
    fn container_event(&self, container_id: &str, action: &str, attrs: &[(&str, &str)]) {
        self.publish("container", action, container_id, attrs);
    }
}

impl Events {
    /// Publishes an event.
    pub fn publish(&self, kind: &'static str, action: &str, id: &str, attrs: &[(&str, &str)]) {
        let ev = Event {
            kind,
            action: action.to_owned(),
            id: id.to_owned(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            time_nano: crate::time::now().1,
        };
        tracing::debug!(kind, action, id, "event");
        {
            let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if r.len() >= HISTORY {
                r.pop_front();
            }
            r.push_back(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    /// Subscribes, returning the past events at or after `since_nano` (taken atomically with
    /// the subscription, so none is missed or doubled).
    pub fn subscribe(&self, since_nano: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let past = match since_nano {
            Some(s) => r.iter().filter(|e| e.time_nano >= s).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

/// Parses Docker's `since`/`until`: `seconds[.nanoseconds]` (what the CLI sends) or RFC 3339.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if let Some(t) = crate::time::parse_rfc3339(s) {
        return Some(t * 1_000_000_000);
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    if !frac.is_empty() {
        let f = format!("{:0<9}", &frac[..frac.len().min(9)]);
        nanos = f.parse().ok()?;
    }
    Some(secs * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_and_filters() {
        let ev = Events::default();
        ev.publish("image", "tag", "sha256:ab", &[("name", "x:1")]);
        let (past, _rx) = ev.subscribe(Some(0));
        assert_eq!(past.len(), 1);
        let j = past[0].to_json();
        assert_eq!(j["Type"], "image");
        assert_eq!(j["status"], "tag");
        let f = crate::http::Filters::parse(r#"{"type":["volume"]}"#).unwrap();
        assert!(!past[0].matches(&f));
        let f = crate::http::Filters::parse(r#"{"image":["x:1"],"event":["tag"]}"#).unwrap();
        assert!(past[0].matches(&f));
        assert_eq!(parse_timestamp("12.5"), Some(12_500_000_000));
        assert_eq!(parse_timestamp("12"), Some(12_000_000_000));
    }
}
