//! How the dashboard shows times and actors: a time reads "3 min ago" or
//! "2026-12-02 13:05 UTC" with the exact RFC 3339 instant on hover, and an
//! actor reads as its name (API key name, user name) with its id on hover.
//! Rendered on the server: no script needed.

use crate::AppState;
use askama::filters::Escaper;
use rekey_core::time::{ms_to_datetime, ms_to_rfc3339, now_ms, parse_rfc3339};
use std::collections::HashMap;
use std::fmt;

/// A time as a `<time>` element (see [`When::html`]).
#[derive(Clone, Debug)]
pub(crate) struct When {
    /// The exact instant, UTC, RFC 3339; `None` when the text did not parse.
    iso: Option<String>,
    text: String,
}

impl When {
    /// `rfc3339` as read by people, relative to `now` (Unix ms).
    pub(crate) fn at(rfc3339: &str, now: i64) -> When {
        match parse_rfc3339("at", rfc3339) {
            Ok(ms) => When {
                iso: Some(ms_to_rfc3339(ms)),
                text: readable(ms, now),
            },
            // Shown as stored rather than hidden.
            Err(_) => When {
                iso: None,
                text: rfc3339.to_string(),
            },
        }
    }

    pub(crate) fn now(rfc3339: &str) -> When {
        When::at(rfc3339, now_ms())
    }

    /// An optional time; "—" when there is none.
    pub(crate) fn opt(v: &Option<String>) -> When {
        match v {
            Some(t) => When::now(t),
            None => When {
                iso: None,
                text: "—".into(),
            },
        }
    }
}

/// Recent times relative ("3 min ago", "in 2 h"), older ones as a date and
/// minute in UTC.
fn readable(ms: i64, now: i64) -> String {
    let secs = (now - ms) / 1000;
    let (ago, n) = (secs >= 0, secs.abs());
    let rel = |v: i64, unit: &str| {
        if ago {
            format!("{v} {unit} ago")
        } else {
            format!("in {v} {unit}")
        }
    };
    match n {
        0..=44 if ago => "just now".into(),
        0..=59 => rel(n.max(1), "s"),
        60..=3599 => rel(n / 60, "min"),
        3600..=86_399 => rel(n / 3600, "h"),
        _ => {
            let d = ms_to_datetime(ms);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute()
            )
        }
    }
}

/// `<time datetime="…" title="…">text</time>`. Every character comes from
/// formatting a parsed instant (or is escaped), so it is safe as HTML.
impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.iso {
            Some(iso) => write!(
                f,
                r#"<time datetime="{iso}" title="{iso}">{}</time>"#,
                self.text
            ),
            None => askama::filters::Html.write_escaped_str(&mut *f, &self.text),
        }
    }
}

impl askama::filters::HtmlSafe for When {}

/// Who did something, by name, with the raw actor id kept for the title.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub name: String,
    pub id: String,
}

/// Names for the actor ids of audit entries: `api_key:<id>` becomes the
/// key's name, `user:<name>` the user name; others stay as they are.
pub(crate) struct Actors(HashMap<String, String>);

impl Actors {
    /// The tenant's API key names (revoked keys included: old entries
    /// still name them). Without them, ids are shown.
    pub(crate) async fn load(s: &AppState, tenant: &str) -> Actors {
        let keys = s.rekey.list_api_keys(tenant).await.unwrap_or_default();
        Actors(keys.into_iter().map(|k| (k.id, k.name)).collect())
    }

    pub(crate) fn of(&self, actor: &str) -> Actor {
        let name = if let Some(id) = actor.strip_prefix("api_key:") {
            match self.0.get(id) {
                Some(n) => format!("{n} (API key)"),
                None => format!("API key {id}"),
            }
        } else if let Some(u) = actor.strip_prefix("user:") {
            format!("{u} (user)")
        } else if actor.starts_with("connect_session:") {
            "Connect link".into()
        } else if let Some(job) = actor.strip_prefix("system:") {
            match job {
                "health" => "rekey (health check)".into(),
                "refresh" => "rekey (token refresh)".into(),
                other => format!("rekey ({other})"),
            }
        } else if actor == "system" {
            "rekey".into()
        } else {
            actor.to_string()
        };
        Actor {
            name,
            id: actor.to_string(),
        }
    }
}

/// The evidence of an audit entry, compact: a status change as `from → to`,
/// then its reason and note. Only these keys: whatever else `details`
/// holds is not shown.
pub(crate) fn evidence(d: &serde_json::Value) -> String {
    let str_of = |k: &str| d.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    let mut parts = Vec::new();
    if let (Some(f), Some(t)) = (str_of("from"), str_of("to")) {
        parts.push(format!("{f} → {t}"));
    }
    if let Some(r) = str_of("reason") {
        parts.push(format!("reason: {r}"));
    }
    if let Some(n) = str_of("note") {
        parts.push(format!("note: “{n}”"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_216_700_000; // 2026-12-02T13:05:00Z

    #[test]
    fn times_read_relative_then_absolute_with_the_instant_on_hover() {
        let at = |s: &str| When::at(s, NOW).to_string();
        assert_eq!(
            at("2026-12-02T13:02:00Z"),
            r#"<time datetime="2026-12-02T13:02:00Z" title="2026-12-02T13:02:00Z">3 min ago</time>"#
        );
        assert!(at("2026-12-02T13:04:50Z").contains(">just now<"));
        assert!(at("2026-12-02T10:04:00Z").contains(">3 h ago<"));
        assert!(at("2026-12-02T13:15:00Z").contains(">in 10 min<"));
        assert!(at("2026-11-30T08:07:00.5Z").contains(">2026-11-30 08:07 UTC<"));
        // Anything else is shown escaped, without a datetime.
        assert_eq!(at("<b>soon</b>"), "&#60;b&#62;soon&#60;/b&#62;");
        assert_eq!(When::opt(&None).to_string(), "—");
    }

    #[test]
    fn actors_read_by_name() {
        let a = Actors(HashMap::from([("key_1".to_string(), "ci".to_string())]));
        assert_eq!(a.of("api_key:key_1").name, "ci (API key)");
        assert_eq!(a.of("api_key:key_1").id, "api_key:key_1");
        assert_eq!(a.of("api_key:key_9").name, "API key key_9");
        assert_eq!(a.of("user:ada").name, "ada (user)");
        assert_eq!(a.of("system").name, "rekey");
        assert_eq!(a.of("system:health").name, "rekey (health check)");
        assert_eq!(a.of("connect_session:cs_1").name, "Connect link");
        assert_eq!(a.of("connect_session:cs_1").id, "connect_session:cs_1");
    }

    #[test]
    fn evidence_shows_only_from_to_reason_and_note() {
        let d =
            serde_json::json!({"from": "pending", "to": "active", "note": "rows", "secret": "x"});
        assert_eq!(evidence(&d), "pending → active; note: “rows”");
        assert_eq!(evidence(&serde_json::json!({"reason": "r"})), "reason: r");
    }
}
