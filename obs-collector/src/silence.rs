//! Silences, as Alertmanager keeps them: label matchers (`=`, `!=`, `=~`, `!~`, regexes fully
//! anchored), a start and an end, who and why. An alert matched by an active silence sends
//! nothing, neither firing nor resolved. Silences are persisted with the alert state, expire on
//! time, and are kept five days after their end (Alertmanager's retention) for the record.
//!
//! The API's shapes are Alertmanager's v2 (`PostableSilence`, `GettableSilence`), so `amtool`
//! works unchanged; see [`crate::web`] for the routes.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::labels::{valid_name, Labels};

/// How long an expired silence is kept (Alertmanager's `--data.retention` default).
pub const RETENTION_MS: i64 = 5 * 24 * 3_600_000;
/// The longest `comment` or `createdBy` accepted.
pub const TEXT_MAX: usize = 4096;
/// The most matchers in one silence.
pub const MATCHERS_MAX: usize = 64;

/// One label matcher, in the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// `false` for `!=` and `!~` (the API's default is `true`).
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

/// A matcher ready to match: its regex compiled (anchored, as Alertmanager's).
#[derive(Debug, Clone)]
struct Compiled {
    matcher: Matcher,
    regex: Option<Regex>,
}

impl Compiled {
    fn new(matcher: Matcher) -> Result<Self, Invalid> {
        if !valid_name(&matcher.name) {
            return Err(Invalid(format!("invalid label name {:?}", matcher.name)));
        }
        let regex = if matcher.is_regex {
            Some(
                Regex::new(&format!("^(?:{})$", matcher.value)).map_err(|e| {
                    Invalid(format!("invalid regular expression in {matcher}: {e}"))
                })?,
            )
        } else {
            None
        };
        Ok(Self { matcher, regex })
    }

    fn matches(&self, value: &str) -> bool {
        let equal = match &self.regex {
            Some(regex) => regex.is_match(value),
            None => self.matcher.value == value,
        };
        equal == self.matcher.is_equal
    }
}

/// Why a silence (or a filter) was refused; the API answers 400 with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Why a change to the silences was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Bad input (the API answers 400).
    Invalid(Invalid),
    /// No silence has this id (the API answers 404).
    NotFound(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Invalid(e) => e.fmt(f),
            Refused::NotFound(id) => write!(f, "silence {id} not found"),
        }
    }
}

impl std::error::Error for Refused {}

impl From<Invalid> for Refused {
    fn from(e: Invalid) -> Self {
        Refused::Invalid(e)
    }
}

/// A silence's state at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// One silence, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub updated_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    /// Its state at `t`.
    pub fn state(&self, t: i64) -> SilenceState {
        if t >= self.ends_ms {
            SilenceState::Expired
        } else if t < self.starts_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }
}

/// A silence to create or update (`POST /api/v2/silences`), times already parsed.
#[derive(Debug, Clone)]
pub struct NewSilence {
    /// An existing silence to update, if any.
    pub id: Option<String>,
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    pub comment: String,
}

/// Every silence, with its compiled matchers.
#[derive(Debug, Default, Clone)]
pub struct Silences {
    entries: Vec<(Silence, Vec<Compiled>)>,
}

impl Silences {
    /// Rebuilds the set from persisted silences (invalid ones, which cannot have been saved by
    /// this code, are dropped).
    pub fn restore(saved: Vec<Silence>) -> Self {
        let entries = saved
            .into_iter()
            .filter_map(|s| {
                let compiled = compile(&s.matchers).ok()?;
                Some((s, compiled))
            })
            .collect();
        Self { entries }
    }

    /// The silences, oldest first, for persisting and listing.
    pub fn all(&self) -> impl Iterator<Item = &Silence> {
        self.entries.iter().map(|(s, _)| s)
    }

    /// The silence `id`.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.all().find(|s| s.id == id)
    }

    /// The ids of the silences active at `t` that match `labels`.
    pub fn silenced_by(&self, labels: &Labels, t: i64) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(s, _)| s.state(t) == SilenceState::Active)
            .filter(|(_, matchers)| {
                matchers
                    .iter()
                    .all(|m| m.matches(labels.get(&m.matcher.name).unwrap_or_default()))
            })
            .map(|(s, _)| s.id.clone())
            .collect()
    }

    /// Whether an active silence matches `labels` at `t`.
    pub fn is_silenced(&self, labels: &Labels, t: i64) -> bool {
        !self.silenced_by(labels, t).is_empty()
    }

    /// Creates a silence, or updates one (`new.id`), at `now`; returns its id. An update of
    /// the matchers or of an active silence's start expires the old one and creates another,
    /// as Alertmanager does. `new_id` names a created silence.
    pub fn upsert(
        &mut self,
        new: NewSilence,
        now: i64,
        new_id: impl FnOnce() -> String,
    ) -> Result<String, Refused> {
        let compiled = validate(&new, now)?;
        let starts_ms = new.starts_ms.max(now);
        if let Some(id) = &new.id {
            let Some(index) = self.entries.iter().position(|(s, _)| &s.id == id) else {
                return Err(Refused::NotFound(id.clone()));
            };
            let (old, _) = &mut self.entries[index];
            let state = old.state(now);
            let same_start = state == SilenceState::Pending || old.starts_ms == new.starts_ms;
            if state != SilenceState::Expired && old.matchers == new.matchers && same_start {
                old.starts_ms = if state == SilenceState::Pending {
                    starts_ms
                } else {
                    old.starts_ms
                };
                old.ends_ms = new.ends_ms;
                old.comment = new.comment;
                old.created_by = new.created_by;
                old.updated_ms = now;
                return Ok(id.clone());
            }
            self.expire(id, now)?;
        }
        let id = new_id();
        self.entries.push((
            Silence {
                id: id.clone(),
                matchers: new.matchers,
                starts_ms,
                ends_ms: new.ends_ms,
                updated_ms: now,
                created_by: new.created_by,
                comment: new.comment,
            },
            compiled,
        ));
        Ok(id)
    }

    /// Expires silence `id` at `now` (a pending one never starts).
    pub fn expire(&mut self, id: &str, now: i64) -> Result<(), Refused> {
        let Some((s, _)) = self.entries.iter_mut().find(|(s, _)| s.id == id) else {
            return Err(Refused::NotFound(id.to_owned()));
        };
        match s.state(now) {
            SilenceState::Expired => Err(Invalid(format!("silence {id} already expired")).into()),
            SilenceState::Pending => {
                s.starts_ms = now;
                s.ends_ms = now;
                s.updated_ms = now;
                Ok(())
            }
            SilenceState::Active => {
                s.ends_ms = now;
                s.updated_ms = now;
                Ok(())
            }
        }
    }

    /// Forgets silences that ended more than [`RETENTION_MS`] before `now`.
    pub fn collect_garbage(&mut self, now: i64) {
        self.entries
            .retain(|(s, _)| now - s.ends_ms <= RETENTION_MS);
    }
}

/// A new silence id: a random UUID (version 4), as Alertmanager's.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn compile(matchers: &[Matcher]) -> Result<Vec<Compiled>, Invalid> {
    matchers.iter().cloned().map(Compiled::new).collect()
}

/// Alertmanager's checks of a silence, and obs' bounds.
fn validate(new: &NewSilence, now: i64) -> Result<Vec<Compiled>, Invalid> {
    if new.matchers.is_empty() {
        return Err(Invalid("at least one matcher is required".into()));
    }
    if new.matchers.len() > MATCHERS_MAX {
        return Err(Invalid(format!("at most {MATCHERS_MAX} matchers")));
    }
    let compiled = compile(&new.matchers)?;
    if compiled.iter().all(|m| m.matches("")) {
        return Err(Invalid(
            "at least one matcher must not match the empty string".into(),
        ));
    }
    if new.ends_ms <= new.starts_ms {
        return Err(Invalid("end time must be after the start time".into()));
    }
    if new.ends_ms <= now {
        return Err(Invalid("end time cannot be in the past".into()));
    }
    for (what, text) in [("comment", &new.comment), ("createdBy", &new.created_by)] {
        if text.len() > TEXT_MAX {
            return Err(Invalid(format!(
                "{what} is {} bytes; at most {TEXT_MAX}",
                text.len()
            )));
        }
    }
    if new.created_by.trim().is_empty() {
        return Err(Invalid("createdBy is required".into()));
    }
    Ok(compiled)
}

/// Parses an `amtool`-style filter matcher: `name=value`, `name!="value"`, `name=~"re"`.
pub fn parse_filter(text: &str) -> Result<Matcher, Invalid> {
    let bad = || Invalid(format!("invalid filter matcher {text:?}"));
    let at = text.find(['=', '!']).ok_or_else(bad)?;
    let (name, rest) = text.split_at(at);
    let (op, value) = ["=~", "!~", "!=", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
        .ok_or_else(bad)?;
    let value = value.trim();
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_owned(),
    };
    let matcher = Matcher {
        name: name.trim().to_owned(),
        value,
        is_regex: op.ends_with('~'),
        is_equal: !op.starts_with('!'),
    };
    Compiled::new(matcher.clone())?;
    Ok(matcher)
}

/// Whether every matcher of `filter` matches `labels` (an absent label is the empty string).
pub fn matches_all(filter: &[Matcher], labels: &Labels) -> bool {
    filter.iter().all(|f| {
        Compiled::new(f.clone()).is_ok_and(|c| c.matches(labels.get(&f.name).unwrap_or_default()))
    })
}

/// Whether silence `s` passes the API's `filter` matchers: they are applied to the labels its
/// equality matchers name, as Alertmanager does.
pub fn passes_filter(s: &Silence, filter: &[Matcher]) -> bool {
    let labels = Labels::new(
        s.matchers
            .iter()
            .filter(|m| m.is_equal && !m.is_regex)
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect(),
    );
    matches_all(filter, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        }
    }

    fn new(matchers: Vec<Matcher>, starts_ms: i64, ends_ms: i64) -> NewSilence {
        NewSilence {
            id: None,
            matchers,
            starts_ms,
            ends_ms,
            created_by: "alice".into(),
            comment: "deploy".into(),
        }
    }

    #[test]
    fn matchers_have_alertmanagers_semantics() {
        let mut silences = Silences::default();
        let id = silences
            .upsert(
                new(
                    vec![
                        m("alertname", "High.*", true, true),
                        m("job", "checkout", false, true),
                        m("env", "dev|test", true, false),
                        m("team", "web", false, false),
                    ],
                    1_000,
                    10_000,
                ),
                1_000,
                || "s1".into(),
            )
            .unwrap();
        assert_eq!(id, "s1");
        let alert = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs);
        let hit = alert(&[("alertname", "HighErrorRate"), ("job", "checkout")]);
        assert!(silences.is_silenced(&hit, 5_000));
        assert_eq!(silences.silenced_by(&hit, 5_000), ["s1"]);
        // Anchored regex: "XHighErrorRate" does not match "High.*".
        assert!(!silences.is_silenced(
            &alert(&[("alertname", "XHighErrorRate"), ("job", "checkout")]),
            5_000
        ));
        assert!(!silences.is_silenced(
            &alert(&[
                ("alertname", "HighErrorRate"),
                ("job", "checkout"),
                ("env", "dev")
            ]),
            5_000
        ));
        assert!(!silences.is_silenced(
            &alert(&[
                ("alertname", "HighErrorRate"),
                ("job", "checkout"),
                ("team", "web")
            ]),
            5_000
        ));
        // Not before its start, not from its end on.
        assert!(!silences.is_silenced(&hit, 999));
        assert!(!silences.is_silenced(&hit, 10_000));
        assert_eq!(
            silences.get("s1").unwrap().state(10_000),
            SilenceState::Expired
        );
    }

    #[test]
    fn bad_silences_are_refused_and_change_nothing() {
        let mut silences = Silences::default();
        let cases = [
            (new(vec![], 0, 10), "at least one matcher"),
            (
                new(vec![m("job", "(", true, true)], 0, 10),
                "invalid regular expression",
            ),
            (new(vec![m("job", ".*", true, true)], 0, 10), "empty string"),
            (
                new(vec![m("0job", "a", false, true)], 0, 10),
                "invalid label name",
            ),
            (
                new(vec![m("job", "a", false, true)], 10, 5),
                "after the start",
            ),
            (new(vec![m("job", "a", false, true)], 0, 50), "in the past"),
        ];
        for (silence, why) in cases {
            let e = silences.upsert(silence, 100, || "x".into()).unwrap_err();
            assert!(
                matches!(&e, Refused::Invalid(i) if i.0.contains(why)),
                "{e}"
            );
        }
        let mut long = new(vec![m("job", "a", false, true)], 0, 1_000);
        long.comment = "x".repeat(100 * 1024);
        let e = silences.upsert(long, 100, || "x".into()).unwrap_err();
        assert!(
            matches!(&e, Refused::Invalid(i) if i.0.contains("bytes")),
            "{e}"
        );
        assert_eq!(silences.all().count(), 0);
        assert_eq!(
            silences.expire("nope", 0),
            Err(Refused::NotFound("nope".into()))
        );
    }

    #[test]
    fn updates_expiry_and_garbage_collection() {
        let mut silences = Silences::default();
        let job = vec![m("job", "a", false, true)];
        silences
            .upsert(new(job.clone(), 0, 1_000), 0, || "s1".into())
            .unwrap();
        // Same matchers, active: the end moves in place.
        let mut longer = new(job.clone(), 0, 5_000);
        longer.id = Some("s1".into());
        assert_eq!(silences.upsert(longer, 500, || "s2".into()).unwrap(), "s1");
        assert_eq!(silences.get("s1").unwrap().ends_ms, 5_000);
        // Other matchers: the old one expires, a new one is made.
        let mut other = new(vec![m("job", "b", false, true)], 0, 5_000);
        other.id = Some("s1".into());
        assert_eq!(silences.upsert(other, 600, || "s2".into()).unwrap(), "s2");
        assert_eq!(
            silences.get("s1").unwrap().state(600),
            SilenceState::Expired
        );
        assert!(silences.expire("s1", 700).is_err(), "already expired");
        silences.expire("s2", 700).unwrap();
        silences.collect_garbage(700 + RETENTION_MS);
        assert_eq!(
            silences.all().count(),
            1,
            "s2 kept for the retention, s1 not"
        );
        silences.collect_garbage(701 + RETENTION_MS);
        assert_eq!(silences.all().count(), 0);
    }

    #[test]
    fn filters_as_amtool_sends_them() {
        assert_eq!(
            parse_filter("alertname=\"HighErrorRate\"").unwrap(),
            m("alertname", "HighErrorRate", false, true)
        );
        assert_eq!(
            parse_filter("job!~\"a|b\"").unwrap(),
            m("job", "a|b", true, false)
        );
        assert!(parse_filter("job").is_err() && parse_filter("job=~\"(\"").is_err());
        let s = Silence {
            id: "s".into(),
            matchers: vec![
                m("alertname", "HighErrorRate", false, true),
                m("job", "checkout", false, true),
            ],
            starts_ms: 0,
            ends_ms: 1,
            updated_ms: 0,
            created_by: "a".into(),
            comment: "c".into(),
        };
        assert!(passes_filter(&s, &[parse_filter("job=checkout").unwrap()]));
        assert!(!passes_filter(&s, &[parse_filter("job=cart").unwrap()]));
    }
}
