//! Scraping: one task per target, on the job's interval, with a timeout and a body-size limit.
//!
//! Every scrape writes `up` (1 or 0), `scrape_duration_seconds` and `scrape_samples_scraped`
//! for the target. A failed scrape (connection, timeout, HTTP status, oversized or malformed
//! page) writes `up` 0 and stale markers for the target's previous series, exactly like
//! Prometheus, so queries stop seeing them at once; it never stops the process.

pub mod metadata;
pub mod parse;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Job, Target};
use crate::labels::{Labels, NAME};
use crate::promql::Exemplar;
use crate::store::{self, SeriesRef, Store};
use metadata::Metadata;

/// What a page is accepted as.
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The outcome of one scrape of one target, for the status page and API.
#[derive(Debug, Clone, Default)]
pub struct TargetStatus {
    pub job: String,
    pub labels: Labels,
    pub url: String,
    pub up: Option<bool>,
    pub last_scrape_ms: Option<i64>,
    pub last_duration_s: f64,
    pub last_error: Option<String>,
    pub samples: usize,
}

impl TargetStatus {
    /// Prometheus' target health: `up`, `down`, or `unknown` before the first scrape.
    pub fn health(&self) -> &'static str {
        match self.up {
            Some(true) => "up",
            Some(false) => "down",
            None => "unknown",
        }
    }
}

/// A target's scrape cache, as Prometheus keeps one: each page line's series text
/// (`name{labels}`) mapped to its label set and store handle, so a repeated line costs a hash
/// lookup instead of a label parse. Entries not seen in a scrape get a stale marker. The text
/// is keyed by its 64-bit SipHash with per-target random keys (not stored: 150 bytes a series
/// saved; a collision, about 1 in 10^17 for 100 series, cannot be forced by the target).
#[derive(Debug, Default)]
pub struct TargetSeries {
    cache: HashMap<u64, (Labels, SeriesRef, u64)>,
    keys: std::collections::hash_map::RandomState,
    scrapes: u64,
    /// The exemplars of the last page (OpenMetrics), with a trace id.
    pub exemplars: Vec<Exemplar>,
    /// What the last page says the target serves: `target_info`'s `service_version`.
    pub version: Option<String>,
    /// The last page's `process_start_time_seconds`.
    pub started_s: Option<f64>,
    /// What the last page says of its metric families, rebuilt only when its comments change
    /// (`comments`, their hash).
    pub metadata: Arc<BTreeMap<String, Metadata>>,
    comments: u64,
}

/// The series that say what a target serves (obs-core's names, the Prometheus conventions).
const TARGET_INFO: &str = "target_info";
const SERVICE_VERSION: &str = "service_version";
const PROCESS_START_TIME: &str = "process_start_time_seconds";

impl TargetSeries {
    fn key(&self, series: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.keys, series)
    }
}

/// The URL scraped for `target` of `job`.
pub fn url(job: &Job, target: &Target) -> String {
    format!("{}://{}{}", job.scheme, target.address, job.metrics_path)
}

/// Why a scrape stored no samples (shown as the target's last error, as Prometheus words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrapeError {
    /// The target could not be reached or did not answer in time ([`crate::transport::describe`]d).
    Transport(String),
    /// The target answered with a status other than 2xx.
    Status(reqwest::StatusCode),
    /// The page is larger than the job's `body_size_limit`.
    TooLarge { limit: u64 },
    /// The page is not UTF-8.
    NotUtf8,
    /// The page is not in the exposition format (which line, and why).
    Malformed(String),
}

impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeError::Transport(why) => f.write_str(why),
            ScrapeError::Status(status) => write!(f, "server returned HTTP status {status}"),
            ScrapeError::TooLarge { limit } => {
                write!(f, "body size limit exceeded ({limit} bytes)")
            }
            ScrapeError::NotUtf8 => f.write_str("the page is not valid UTF-8"),
            ScrapeError::Malformed(why) => write!(f, "malformed page: {why}"),
        }
    }
}

impl std::error::Error for ScrapeError {}

/// Fetches a page: HTTP status must be 2xx, the body at most `limit` bytes, UTF-8.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    limit: u64,
) -> Result<String, ScrapeError> {
    let transport = |e| ScrapeError::Transport(crate::transport::describe(e));
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, ACCEPT)
        .timeout(timeout)
        .send()
        .await
        .map_err(transport)?;
    if !response.status().is_success() {
        return Err(ScrapeError::Status(response.status()));
    }
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(ScrapeError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(ScrapeError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| ScrapeError::NotUtf8)
}

/// Writes one scrape's result (the page, or why there is none) into the store at `t`;
/// returns the number of samples stored. A malformed page stores nothing.
pub fn ingest(
    store: &mut Store,
    target: &Target,
    cache: &mut TargetSeries,
    t: i64,
    duration: Duration,
    page: Result<String, ScrapeError>,
) -> Result<usize, ScrapeError> {
    cache.scrapes += 1;
    let scrape = cache.scrapes;
    let outcome = page.and_then(|page| {
        let parse::RawPage {
            samples: raw,
            comments,
            openmetrics,
        } = parse::parse_page(&page).map_err(|e| ScrapeError::Malformed(e.to_string()))?;
        // Validate the lines not seen before, before storing anything.
        let mut fresh = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            if !cache.cache.contains_key(&cache.key(r.series)) {
                let (name, labels) = parse::parse_series(r.series).map_err(|reason| {
                    ScrapeError::Malformed(format!("line {}: {reason}", r.line))
                })?;
                fresh.push((i, series_labels(store, &name, labels, &target.labels)));
            }
        }
        let mut fresh = fresh.into_iter().peekable();
        cache.exemplars.clear();
        cache.version = None;
        cache.started_s = None;
        for (i, r) in raw.iter().enumerate() {
            let key = cache.key(r.series);
            let entry = match fresh.next_if(|(fi, _)| *fi == i) {
                Some((_, labels)) => {
                    let handle = store.get_or_create(&labels);
                    if handle.is_refused() {
                        continue; // the series limit: not cached, so the next scrape asks again
                    }
                    cache
                        .cache
                        .entry(key)
                        .insert_entry((labels, handle, scrape))
                        .into_mut()
                }
                None => match cache.cache.get_mut(&key) {
                    Some(e) => e,
                    None => continue, // a duplicate line of a fresh series: the first one counts
                },
            };
            entry.2 = scrape;
            // A cheap prefix test on the raw line first: two series of a page are these.
            if r.series.starts_with(TARGET_INFO) && entry.0.get(NAME) == Some(TARGET_INFO) {
                cache.version = entry.0.get(SERVICE_VERSION).map(str::to_owned);
            } else if r.series.starts_with(PROCESS_START_TIME)
                && entry.0.get(NAME) == Some(PROCESS_START_TIME)
            {
                cache.started_s = Some(r.value).filter(|v| v.is_finite());
            }
            if let Some(e) = r.exemplar.and_then(|text| exemplar(&entry.0, text, t)) {
                cache.exemplars.push(e);
            }
            if !store.append_ref(entry.1, t, r.value) {
                // Removed since (stale for long): made again, or refused at the limit.
                entry.1 = store.get_or_create(&entry.0);
                store.append_ref(entry.1, t, r.value);
            }
        }
        let hash = std::hash::BuildHasher::hash_one(&cache.keys, (&comments, openmetrics));
        if hash != cache.comments {
            cache.metadata = Arc::new(metadata::of_comments(&comments, openmetrics));
            cache.comments = hash;
        }
        Ok(raw.len())
    });
    cache.cache.retain(|_, (_, handle, seen)| {
        if *seen != scrape {
            store.append_ref(*handle, t, store::stale());
        }
        *seen == scrape
    });
    let samples = outcome.as_ref().map_or(0, |n| *n);
    for (name, v) in [
        ("up", if outcome.is_ok() { 1.0 } else { 0.0 }),
        ("scrape_duration_seconds", duration.as_secs_f64()),
        ("scrape_samples_scraped", samples as f64),
    ] {
        let mut labels = target.labels.clone();
        labels.set(NAME, name);
        store.append(&labels, t, v);
    }
    outcome
}

/// OpenMetrics' limit on an exemplar's label names and values together.
const EXEMPLAR_LABELS_MAX: usize = 128;

/// The exemplar `text` of `series`, scraped at `t`, when it names a trace (`trace_id`, or
/// `traceID` as some clients write it); a malformed one is ignored, as it changes no sample.
fn exemplar(series: &Labels, text: &str, t: i64) -> Option<Exemplar> {
    let (labels, value, timestamp) = parse::parse_exemplar(text).ok()?;
    let trace_id = labels
        .into_iter()
        .find(|(k, v)| (k == "trace_id" || k == "traceID") && !v.is_empty())?
        .1;
    // OpenMetrics caps an exemplar's labels at 128 characters; a longer id is no trace id.
    if trace_id.chars().count() > EXEMPLAR_LABELS_MAX {
        return None;
    }
    Some(Exemplar {
        series: series.clone(),
        trace_id,
        value,
        timestamp_ms: timestamp.map_or(t, |s| (s * 1000.0).round() as i64),
    })
}

/// The page's labels plus the target's, interned; a page label that clashes with a target
/// label is kept as `exported_<name>` (Prometheus' `honor_labels: false`).
fn series_labels(
    store: &mut Store,
    name: &str,
    labels: Vec<(String, String)>,
    target: &Labels,
) -> Labels {
    let mut pairs: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(labels.len() + target.len() + 1);
    for (k, v) in labels {
        let k = if target.get(&k).is_some() {
            format!("exported_{k}")
        } else {
            k
        };
        pairs.push((store.intern(&k), store.intern(&v)));
    }
    pairs.extend(target.pairs().iter().cloned());
    pairs.push((store.intern(NAME), store.intern(name)));
    Labels::from_arcs(pairs)
}

/// Scrapes `target` once and ingests the result.
pub async fn scrape_once(
    client: &reqwest::Client,
    job: &Job,
    target: &Target,
    store: &std::sync::RwLock<Store>,
    previous: &mut TargetSeries,
    t: i64,
) -> Result<usize, ScrapeError> {
    let started = Instant::now();
    let result = fetch(client, &url(job, target), job.timeout, job.body_size_limit).await;
    let duration = started.elapsed();
    let mut store = store
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ingested = ingest(&mut store, target, previous, t, duration, result);
    // The scrape's samples (and its `up`) reach the log in one write.
    store.commit();
    ingested
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            address: "h:1".into(),
            labels: Labels::from_pairs(&[("job", "app"), ("instance", "h:1")]),
        }
    }

    /// [`ingest`] of `page` for [`target`] at `t`.
    fn scrape_page(
        store: &mut Store,
        cache: &mut TargetSeries,
        t: i64,
        page: Result<String, ScrapeError>,
    ) -> Result<usize, ScrapeError> {
        ingest(store, &target(), cache, t, Duration::ZERO, page)
    }

    #[test]
    fn the_page_says_what_the_target_serves() {
        let mut store = Store::new(600_000);
        let mut cache = TargetSeries::default();
        let page = "target_info{service_name=\"shop\",service_version=\"1.1.0\"} 1\n\
                    target_info_other{service_version=\"x\"} 1\nprocess_start_time_seconds 1.7e9\n";
        scrape_page(&mut store, &mut cache, 1000, Ok(page.to_owned())).unwrap();
        assert_eq!(
            (cache.version.as_deref(), cache.started_s),
            (Some("1.1.0"), Some(1.7e9))
        );
        // A page without them says nothing is known, not what the last one said.
        scrape_page(&mut store, &mut cache, 2000, Ok("up_other 1\n".to_owned())).unwrap();
        assert_eq!((cache.version.as_deref(), cache.started_s), (None, None));
    }

    #[test]
    fn failed_scrapes_mark_series_stale_and_write_up() {
        let mut store = Store::new(600_000);
        let mut prev = TargetSeries::default();
        let page = "req_total{code=\"200\",job=\"inner\"} 5\n".to_owned();
        assert_eq!(scrape_page(&mut store, &mut prev, 1000, Ok(page)), Ok(1));
        let series = store.series(Some("req_total")).next().unwrap();
        assert_eq!(
            series.labels.get("exported_job"),
            Some("inner"),
            "clashing labels are kept as exported_*"
        );
        assert_eq!(series.labels.get("job"), Some("app"));
        assert_eq!(series.instant(1000, false), Some(5.0));
        let up = |s: &Store, t| s.series(Some("up")).next().unwrap().instant(t, false);
        assert_eq!(up(&store, 1000), Some(1.0));

        assert!(scrape_page(
            &mut store,
            &mut prev,
            2000,
            Err(ScrapeError::Transport("timeout".into()))
        )
        .is_err());
        assert_eq!(up(&store, 2000), Some(0.0));
        assert_eq!(
            store
                .series(Some("req_total"))
                .next()
                .unwrap()
                .instant(2000, false),
            None,
            "stale after a failed scrape"
        );
    }

    #[test]
    fn a_malformed_page_stores_nothing_from_it() {
        let mut store = Store::new(600_000);
        let mut cache = TargetSeries::default();
        let page = "good 1\nbad{x=\"1\"\n".to_owned();
        let err = scrape_page(&mut store, &mut cache, 1000, Ok(page)).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed page: line 2"),
            "{err}"
        );
        assert_eq!(store.series(Some("good")).count(), 0);
        assert_eq!(
            store
                .series(Some("up"))
                .next()
                .unwrap()
                .instant(1000, false),
            Some(0.0)
        );
    }

    #[test]
    fn vanished_series_go_stale() {
        let mut store = Store::new(600_000);
        let mut prev = TargetSeries::default();
        let page = |p: &str| Ok(p.to_owned());
        scrape_page(&mut store, &mut prev, 1000, page("a 1\nb 1\n")).unwrap();
        scrape_page(&mut store, &mut prev, 2000, page("a 2\n")).unwrap();
        assert_eq!(
            store.series(Some("b")).next().unwrap().instant(2000, false),
            None
        );
        assert_eq!(
            store.series(Some("a")).next().unwrap().instant(2000, false),
            Some(2.0)
        );
    }

    #[test]
    fn metadata_follows_the_last_good_page() {
        let mut store = Store::new(600_000);
        let mut prev = TargetSeries::default();
        let page = |p: &str| Ok(p.to_owned());
        scrape_page(&mut store, &mut prev, 1000, page("# TYPE a gauge\na 1\n")).unwrap();
        let first = Arc::clone(&prev.metadata);
        assert_eq!(first["a"].kind, "gauge");
        scrape_page(&mut store, &mut prev, 2000, page("# TYPE a gauge\na 2\n")).unwrap();
        assert!(
            Arc::ptr_eq(&first, &prev.metadata),
            "same comments: not rebuilt"
        );
        let bad = scrape_page(
            &mut store,
            &mut prev,
            3000,
            page("# TYPE b counter\nb{ 1\n"),
        );
        assert!(bad.is_err());
        assert_eq!(
            prev.metadata.keys().collect::<Vec<_>>(),
            ["a"],
            "a bad page changes nothing"
        );
        scrape_page(&mut store, &mut prev, 4000, page("# HELP b B.\nb 1\n")).unwrap();
        assert_eq!(prev.metadata.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(prev.metadata["b"].help, "B.");
    }

    #[test]
    fn exemplars_with_a_trace_are_kept_and_bad_ones_change_no_sample() {
        let mut store = Store::new(600_000);
        let mut prev = TargetSeries::default();
        let long = "a".repeat(129);
        let page = format!(
            "d_bucket{{le=\"1\"}} 3 # {{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"}} 0.5 1700000000.123\n\
             d_bucket{{le=\"2\"}} 4 # {{span_id=\"00f067aa0ba902b7\"}} 1.5\n\
             d_bucket{{le=\"5\"}} 5 # {{trace_id=\"{long}\"}} 3\n\
             d_bucket{{le=\"+Inf\"}} 6 # not an exemplar\n\
             d_count 6 # {{traceID=\"abc\"}} 7\n# EOF\n"
        );
        let n = scrape_page(&mut store, &mut prev, 1000, Ok(page)).unwrap();
        assert_eq!(n, 5, "every sample is stored, whatever its exemplar");
        let kept: Vec<(String, f64, i64)> = prev
            .exemplars
            .iter()
            .map(|e| (e.trace_id.clone(), e.value, e.timestamp_ms))
            .collect();
        assert_eq!(
            kept,
            [
                (
                    "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
                    0.5,
                    1_700_000_000_123
                ),
                ("abc".to_owned(), 7.0, 1000), // no timestamp: the scrape's
            ]
        );
        assert_eq!(prev.exemplars[0].series.get("le"), Some("1"));
        assert_eq!(prev.exemplars[0].series.get("job"), Some("app"));
    }
}
