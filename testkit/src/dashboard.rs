//! The shipped dashboard as Grafana uses it, and data for it: every query of
//! `dashboards/obs-red.json` (panels, template variables, the deploy annotation) with
//! Grafana's substitutions, and days of one job's metrics (RED histograms, a release in the
//! middle, a queue's and a database's histograms) as OpenMetrics text, a day at a time, for
//! `obs-collector import` and promtool's backfill alike. Used by the dashboard differential
//! (`obs-collector/tests/dashboard_differential.rs`) and the dashboard benchmark
//! (`dashboard-bench`).

use std::fmt::Write as _;

use serde_json::Value;

/// The shipped dashboard, parsed.
pub fn shipped() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/obs-red.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON")
}

/// What Grafana substitutes into a query: `$__interval`, `$__rate_interval` (as PromQL
/// durations) and the job; every instance and route is selected.
#[derive(Debug, Clone, Copy)]
pub struct Substitutions<'a> {
    pub interval: &'a str,
    pub rate_interval: &'a str,
    pub job: &'a str,
}

impl Substitutions<'_> {
    pub fn apply(&self, expr: &str) -> String {
        expr.replace("$__rate_interval", self.rate_interval)
            .replace("$__interval", self.interval)
            .replace("$job", self.job)
            .replace("$instance", ".*")
            .replace("$route", ".*")
    }
}

/// One query of the dashboard.
#[derive(Debug, Clone)]
pub struct Query {
    /// The panel's title and the target's `refId` (or the annotation's name).
    pub what: String,
    pub expr: String,
    /// Asked at the end of the range only.
    pub instant: bool,
}

/// Every panel target and annotation query of `dashboard`, substituted.
pub fn queries(dashboard: &Value, with: Substitutions) -> Vec<Query> {
    fn walk(p: &Value, with: Substitutions, out: &mut Vec<Query>) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push(Query {
                    what: format!("{} {}", p["title"], t["refId"]),
                    expr: with.apply(expr),
                    instant: t["instant"] == true,
                });
            }
        }
        for q in p["panels"].as_array().into_iter().flatten() {
            walk(q, with, out);
        }
    }
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        walk(p, with, &mut out);
    }
    for a in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = a["expr"].as_str() {
            out.push(Query {
                what: format!("annotation {}", a["name"]),
                expr: with.apply(expr),
                instant: false,
            });
        }
    }
    out
}

/// The template variables' calls: `label_values(sel, label)` as Grafana asks the label-match
/// API, from `start` to `end` (Unix seconds).
pub fn variable_calls(dashboard: &Value, with: Substitutions, start: i64, end: i64) -> Vec<String> {
    let mut calls = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(args) = v["definition"]
            .as_str()
            .and_then(|d| d.strip_prefix("label_values("))
            .and_then(|a| a.strip_suffix(')'))
        else {
            continue;
        };
        let Some((selector, label)) = args.rsplit_once(", ") else {
            continue;
        };
        calls.push(format!(
            "/api/v1/label/{label}/values?match[]={}&start={start}&end={end}",
            crate::client::encode_query(&with.apply(selector))
        ));
    }
    calls
}

/// The OpenMetrics header of [`Job`]'s days.
pub const TYPES: &str = "# TYPE up gauge\n# TYPE target_info gauge\n# TYPE http_server_active_requests gauge\n# TYPE http_server_request_duration_seconds histogram\n# TYPE messaging_process_duration_seconds histogram\n# TYPE db_client_operation_duration_seconds histogram\n";

/// A day's lines made a whole OpenMetrics file.
pub fn openmetrics(body: &str) -> String {
    format!("{TYPES}{body}# EOF\n")
}

/// One job's metrics, day after day: `instances` instances of job `shop` (`shop-N:9464`),
/// `routes` routes with 200s and 500s, the request-duration buckets `les` (`+Inf` last), a
/// sample every `scrape_s` seconds, off the whole second by an eighth (exactly representable
/// in binary). The second half of the instances move to 1.1.0 (60% slower) four days before
/// `end_s`. The values are pseudo-random but the same on every run.
pub struct Job {
    instances: usize,
    routes: usize,
    les: Vec<(String, f64)>,
    scrape_s: i64,
    start_s: i64,
    end_s: i64,
    /// Counters as a service that has run for a while: none starts near zero.
    counts: Vec<f64>,
    seed: u64,
    next_day: i64,
}

impl Job {
    /// The job's `days` days ending at `end_s`.
    pub fn new(
        instances: usize,
        routes: usize,
        les: &[&str],
        scrape_s: i64,
        end_s: i64,
        days: i64,
    ) -> Job {
        let les: Vec<(String, f64)> = les
            .iter()
            .map(|le| {
                let bound = if *le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("a bucket bound")
                };
                ((*le).to_owned(), bound)
            })
            .collect();
        let per_instance = routes * 2 * (les.len() + 2) + 3;
        Job {
            instances,
            routes,
            les,
            scrape_s,
            start_s: end_s - days * 86_400,
            end_s,
            counts: vec![1_000.0; instances * per_instance],
            seed: 0x2545_f491_4f6c_dd1d,
            next_day: 0,
        }
    }

    fn noise(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Writes one scrape of every instance at `t`.
    fn scrape(&mut self, t: i64, day: &mut String) {
        let ts = format!("{t}.125");
        let per_instance = self.counts.len() / self.instances;
        let buckets = self.les.len();
        for i in 0..self.instances {
            let l = format!("job=\"shop\",instance=\"shop-{}:9464\"", i + 1);
            let version = if i >= self.instances / 2 && t > self.end_s - 4 * 86_400 {
                "1.1.0"
            } else {
                "1.0.0"
            };
            let slower = if version == "1.1.0" { 1.6 } else { 1.0 };
            let _ = writeln!(day, "up{{{l}}} 1 {ts}");
            let _ = writeln!(
                day,
                "target_info{{{l},service_version=\"{version}\"}} 1 {ts}"
            );
            let active = (self.noise() * 8.0).floor();
            let _ = writeln!(day, "http_server_active_requests{{{l}}} {active} {ts}");
            let mut c = i * per_instance;
            for r in 0..self.routes {
                let route = if r == 0 {
                    "/users/{id}".to_owned()
                } else {
                    format!("/api/r{r}")
                };
                for code in ["200", "500"] {
                    let rl = format!("{l},http_request_method=\"GET\",http_route=\"{route}\",http_response_status_code=\"{code}\"");
                    let requests = (self.noise() * if code == "500" { 4.0 } else { 60.0 }).floor();
                    let mut cumulative = vec![0.0; buckets];
                    let mut sum = 0.0;
                    for _ in 0..requests as usize {
                        let d = self.noise().powi(2) * slower;
                        sum += d;
                        for (b, (_, bound)) in self.les.iter().enumerate() {
                            if d <= *bound {
                                cumulative[b] += 1.0;
                            }
                        }
                    }
                    for (b, (le, _)) in self.les.iter().enumerate() {
                        self.counts[c + b] += cumulative[b];
                        let _ = writeln!(
                            day,
                            "http_server_request_duration_seconds_bucket{{{rl},le=\"{le}\"}} {} {ts}",
                            self.counts[c + b]
                        );
                    }
                    self.counts[c + buckets] += sum;
                    let _ = writeln!(
                        day,
                        "http_server_request_duration_seconds_sum{{{rl}}} {} {ts}",
                        self.counts[c + buckets]
                    );
                    let _ = writeln!(
                        day,
                        "http_server_request_duration_seconds_count{{{rl}}} {} {ts}",
                        self.counts[c + buckets - 1]
                    );
                    c += buckets + 2;
                }
            }
            // A queue's jobs (a tenth fail) and a database's queries.
            let jobs = (self.noise() * 10.0).floor();
            self.counts[c] += jobs;
            self.counts[c + 1] += (jobs / 10.0).floor();
            let ml = format!("{l},messaging_destination_name=\"emails\"");
            for (b, (le, _)) in self.les.iter().enumerate() {
                let _ = writeln!(
                    day,
                    "messaging_process_duration_seconds_bucket{{{ml},le=\"{le}\"}} {} {ts}",
                    self.counts[c] * (b + 1) as f64 / buckets as f64
                );
            }
            let _ = writeln!(
                day,
                "messaging_process_duration_seconds_count{{{ml}}} {} {ts}",
                self.counts[c]
            );
            let _ = writeln!(
                day,
                "messaging_process_duration_seconds_count{{{ml},error_type=\"timeout\"}} {} {ts}",
                self.counts[c + 1]
            );
            let queries = (self.noise() * 30.0).floor();
            self.counts[c + 2] += queries;
            let dl = format!("{l},db_operation_name=\"SELECT\",db_collection_name=\"users\"");
            for (b, (le, _)) in self.les.iter().enumerate() {
                let _ = writeln!(
                    day,
                    "db_client_operation_duration_seconds_bucket{{{dl},le=\"{le}\"}} {} {ts}",
                    (self.counts[c + 2] * (b + 2) as f64 / (buckets + 1) as f64).floor()
                );
            }
            let _ = writeln!(
                day,
                "db_client_operation_duration_seconds_count{{{dl}}} {} {ts}",
                self.counts[c + 2]
            );
        }
    }
}

impl Iterator for Job {
    /// A day's lines (without the OpenMetrics header and `# EOF`: [`openmetrics`]).
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let from = self.start_s + self.next_day * 86_400;
        if from >= self.end_s {
            return None;
        }
        self.next_day += 1;
        let mut day = String::new();
        let first = (from - self.start_s).div_euclid(self.scrape_s);
        let mut k = first;
        loop {
            let t = self.start_s + k * self.scrape_s + 7;
            if t >= from + 86_400 || t >= self.end_s + 7 {
                break;
            }
            if t >= from {
                self.scrape(t, &mut day);
            }
            k += 1;
        }
        Some(day)
    }
}
