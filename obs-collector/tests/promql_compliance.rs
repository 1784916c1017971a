//! The PromQL compliance differential: the query set of prometheus/compliance
//! (`promql/promql-test-queries.yml`, every template expanded with its variant values, as its
//! tester does), each sent as a range query (a 10-minute window at a 10 s step) to the
//! collector and to a real Prometheus 2.42 holding the same samples, and compared as the
//! tester's `comparer` does: the same series, the same timestamps, values within 1e-5
//! relative; where Prometheus fails, the collector must fail too.
//!
//! The samples are the compliance set's demo service's metrics (`demo_memory_usage_bytes`,
//! `demo_cpu_usage_seconds_total`, `demo_api_request_duration_seconds`, ...) for three
//! instances scraped every 5 s, made here (with a counter reset and a metric that comes and
//! goes), written as one OpenMetrics file, imported into the collector and backfilled into
//! Prometheus by promtool. The sample times are off the whole second, so that no sample sits
//! on the edge of a range: Prometheus 2.x closes ranges on the left, the collector (as
//! Prometheus 3) does not, and the comparison is of everything else.

use std::fmt::Write as _;

use obs_testkit::prometheus::Prometheus;

mod common;

use common::{ask_range, difference, temp_dir, Answer};

const INSTANCES: [&str; 3] = [
    "demo.promlabs.com:10000",
    "demo.promlabs.com:10001",
    "demo.promlabs.com:10002",
];
const SCRAPE_MS: i64 = 5_000;
const HISTORY_MS: i64 = 90 * 60_000;
const LES: [&str; 9] = [
    "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];

/// A small deterministic generator (xorshift), so that every run holds the same samples.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The demo service's metrics for `HISTORY_MS` before `end_ms`, as OpenMetrics.
fn demo_metrics(end_ms: i64) -> String {
    let mut out = String::from(
        "# TYPE demo_num_cpus gauge\n# TYPE demo_memory_usage_bytes gauge\n# TYPE demo_cpu_usage_seconds counter\n# TYPE demo_disk_usage_bytes gauge\n# TYPE demo_batch_last_success_timestamp_seconds gauge\n# TYPE demo_intermittent_metric gauge\n# TYPE demo_api_request_duration_seconds histogram\n",
    );
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let steps = HISTORY_MS / SCRAPE_MS;
    let mut cpu = [[0.0f64; 3]; 3];
    let mut buckets = vec![[0.0f64; LES.len()]; 3 * 8];
    let mut sums = [0.0f64; 3 * 8];
    let mut last_success = [0.0f64; 3];
    for k in 0..steps {
        for (i, instance) in INSTANCES.iter().enumerate() {
            // Off the whole second, and different for each instance.
            let t_ms = end_ms - HISTORY_MS + k * SCRAPE_MS + 234 + 311 * i as i64;
            let ts = format!("{}.{:03}", t_ms / 1000, t_ms % 1000);
            let l = format!("instance=\"{instance}\",job=\"demo\"");
            let _ = writeln!(out, "demo_num_cpus{{{l}}} {} {ts}", [4, 8, 2][i]);
            for (j, kind) in ["buffers", "cached", "free", "used"].iter().enumerate() {
                let wave = ((k as f64) / 40.0 + j as f64).sin();
                let v = (1.0e9 * (j + 1) as f64 + 2.0e8 * wave + 1.0e7 * noise.next()).round();
                let _ = writeln!(
                    out,
                    "demo_memory_usage_bytes{{{l},type=\"{kind}\"}} {v} {ts}"
                );
            }
            for (j, mode) in ["idle", "system", "user"].iter().enumerate() {
                cpu[i][j] += (0.5 + noise.next()) * 5.0 * (j + 1) as f64 / 3.0;
                // One counter restarts, as a process does.
                if i == 2 && j == 2 && k == steps / 2 {
                    cpu[i][j] = noise.next();
                }
                let _ = writeln!(
                    out,
                    "demo_cpu_usage_seconds_total{{{l},mode=\"{mode}\"}} {} {ts}",
                    cpu[i][j]
                );
            }
            let disk = 5.0e10 + 1.0e6 * k as f64 * (i + 1) as f64 + 1.0e5 * noise.next();
            let _ = writeln!(out, "demo_disk_usage_bytes{{{l}}} {disk} {ts}");
            // A batch job that succeeds every 2 minutes (its time, in seconds).
            if k % 24 == 0 {
                last_success[i] = (t_ms / 1000) as f64;
            }
            let _ = writeln!(
                out,
                "demo_batch_last_success_timestamp_seconds{{{l}}} {} {ts}",
                last_success[i]
            );
            // Present 10 minutes, then gone for 10.
            if (k / 120) % 2 == 0 {
                let _ = writeln!(out, "demo_intermittent_metric{{{l}}} {} {ts}", noise.next());
            }
            let mut h = 0;
            for method in ["GET", "POST"] {
                for path in ["/api/bar", "/api/foo"] {
                    for status in ["200", "500"] {
                        let series = i * 8 + h;
                        h += 1;
                        let hl =
                            format!("{l},method=\"{method}\",path=\"{path}\",status=\"{status}\"");
                        let requests =
                            (noise.next() * if status == "500" { 3.0 } else { 20.0 }).floor();
                        for _ in 0..requests as usize {
                            let d = noise.next().powi(3) * 1.5;
                            sums[series] += d;
                            for (b, le) in LES.iter().enumerate() {
                                if *le == "+Inf" || d <= le.parse::<f64>().unwrap() {
                                    buckets[series][b] += 1.0;
                                }
                            }
                        }
                        for (b, le) in LES.iter().enumerate() {
                            let _ = writeln!(
                                out,
                                "demo_api_request_duration_seconds_bucket{{{hl},le=\"{le}\"}} {} {ts}",
                                buckets[series][b]
                            );
                        }
                        let _ = writeln!(
                            out,
                            "demo_api_request_duration_seconds_sum{{{hl}}} {} {ts}",
                            sums[series]
                        );
                        let _ = writeln!(
                            out,
                            "demo_api_request_duration_seconds_count{{{hl}}} {} {ts}",
                            buckets[series][LES.len() - 1]
                        );
                    }
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The variant values of the query set's templates.
fn variants(arg: &str) -> &'static [&'static str] {
    match arg {
        "range" => &["1s", "15s", "1m", "5m", "15m", "1h"],
        "offset" => &["1m", "5m", "10m"],
        "simpleAggrOp" => &["sum", "avg", "max", "min", "count", "stddev", "stdvar"],
        "simpleTimeAggrOp" => &[
            "sum", "avg", "max", "min", "count", "stddev", "stdvar", "absent", "last",
        ],
        "topBottomOp" => &["topk", "bottomk"],
        "quantile" => &[
            "-0.5", "0.1", "0.5", "0.75", "0.95", "0.90", "0.99", "1", "1.5",
        ],
        "arithBinOp" => &["+", "-", "*", "/", "%", "^"],
        "compBinOp" => &["==", "!=", "<", ">", "<=", ">="],
        "binOp" => &[
            "+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">=",
        ],
        "simpleMathFunc" => &[
            "abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "round",
        ],
        "extrapolatedRateFunc" => &["delta", "rate", "increase"],
        "clampFunc" => &["clamp_min", "clamp_max"],
        "instantRateFunc" => &["idelta", "irate"],
        "dateFunc" => &[
            "day_of_month",
            "day_of_week",
            "days_in_month",
            "hour",
            "minute",
            "month",
            "year",
        ],
        other => panic!("unknown variant {other}"),
    }
}

/// The query set: a template, its variant arguments (`{{.name}}` in the template), and whether
/// it must fail.
const CASES: &[(&str, &[&str], bool)] = &[
    ("42", &[], false),
    ("1.234", &[], false),
    (".123", &[], false),
    ("1.23e-3", &[], false),
    ("0x3d", &[], false),
    ("Inf", &[], false),
    ("+Inf", &[], false),
    ("-Inf", &[], false),
    ("NaN", &[], false),
    ("demo_memory_usage_bytes", &[], false),
    (r#"{__name__="demo_memory_usage_bytes"}"#, &[], false),
    (r#"demo_memory_usage_bytes{type="free"}"#, &[], false),
    (r#"demo_memory_usage_bytes{type!="free"}"#, &[], false),
    (r#"demo_memory_usage_bytes{instance=~"demo.promlabs.com:.*"}"#, &[], false),
    (r#"demo_memory_usage_bytes{instance=~"host"}"#, &[], false),
    (r#"demo_memory_usage_bytes{instance!~".*:10000"}"#, &[], false),
    (r#"demo_memory_usage_bytes{type="free", instance!="demo.promlabs.com:10000"}"#, &[], false),
    (r#"{type="free", instance!="demo.promlabs.com:10000"}"#, &[], false),
    (r#"{__name__=~".*"}"#, &[], true),
    ("nonexistent_metric_name", &[], false),
    ("demo_memory_usage_bytes offset {{.offset}}", &["offset"], false),
    ("demo_memory_usage_bytes offset -{{.offset}}", &["offset"], false),
    ("demo_intermittent_metric", &[], false),
    ("{{.simpleAggrOp}}(demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}}(nonexistent_metric_name)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} by() (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} by(instance) (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} by(instance, type) (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} by(nonexistent) (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} without() (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} without(instance) (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} without(instance, type) (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.simpleAggrOp}} without(nonexistent) (demo_memory_usage_bytes)", &["simpleAggrOp"], false),
    ("{{.topBottomOp}} (3, demo_memory_usage_bytes)", &["topBottomOp"], false),
    ("{{.topBottomOp}} by(instance) (2, demo_memory_usage_bytes)", &["topBottomOp"], false),
    ("{{.topBottomOp}} without(instance) (2, demo_memory_usage_bytes)", &["topBottomOp"], false),
    ("{{.topBottomOp}} without() (2, demo_memory_usage_bytes)", &["topBottomOp"], false),
    ("quantile({{.quantile}}, demo_memory_usage_bytes)", &["quantile"], false),
    ("avg(max by(type) (demo_memory_usage_bytes))", &[], false),
    ("1 * 2 + 4 / 6 - 10 % 2 ^ 2", &[], false),
    ("demo_num_cpus + (1 {{.compBinOp}} bool 2)", &["compBinOp"], false),
    ("demo_memory_usage_bytes {{.binOp}} 1.2345", &["binOp"], false),
    ("demo_memory_usage_bytes {{.compBinOp}} bool 1.2345", &["compBinOp"], false),
    ("1.2345 {{.compBinOp}} bool demo_memory_usage_bytes", &["compBinOp"], false),
    ("0.12345 {{.binOp}} demo_memory_usage_bytes", &["binOp"], false),
    ("(1 * 2 + 4 / 6 - (10%7)^2) {{.binOp}} demo_memory_usage_bytes", &["binOp"], false),
    ("demo_memory_usage_bytes {{.binOp}} (1 * 2 + 4 / 6 - 10)", &["binOp"], false),
    ("timestamp(demo_memory_usage_bytes * 1)", &[], false),
    ("timestamp(-demo_memory_usage_bytes)", &[], false),
    ("demo_memory_usage_bytes {{.binOp}} on(instance, job, type) demo_memory_usage_bytes", &["binOp"], false),
    ("sum by(instance, type) (demo_memory_usage_bytes) {{.binOp}} on(instance, type) group_left(job) demo_memory_usage_bytes", &["binOp"], false),
    ("demo_memory_usage_bytes {{.compBinOp}} bool on(instance, job, type) demo_memory_usage_bytes", &["compBinOp"], false),
    ("demo_memory_usage_bytes / on(instance, job, type, __name__) demo_memory_usage_bytes", &[], false),
    ("sum without(job) (demo_memory_usage_bytes) / on(instance, type) demo_memory_usage_bytes", &[], false),
    ("sum without(job) (demo_memory_usage_bytes) / on(instance, type) group_left demo_memory_usage_bytes", &[], false),
    ("sum without(job) (demo_memory_usage_bytes) / on(instance, type) group_left(job) demo_memory_usage_bytes", &[], false),
    ("demo_memory_usage_bytes / on(instance, job) group_left demo_num_cpus", &[], false),
    ("demo_memory_usage_bytes / on(instance, type, job, non_existent) demo_memory_usage_bytes", &[], false),
    ("demo_num_cpus * Inf", &[], false),
    ("demo_num_cpus * -Inf", &[], false),
    ("demo_num_cpus * NaN", &[], false),
    ("demo_memory_usage_bytes + -(1)", &[], false),
    ("-demo_memory_usage_bytes", &[], false),
    ("-1 ^ 2", &[], false),
    ("1 {{.arithBinOp}} time()", &["arithBinOp"], false),
    ("time() {{.arithBinOp}} 1", &["arithBinOp"], false),
    ("time() {{.compBinOp}} bool 1", &["compBinOp"], false),
    ("1 {{.compBinOp}} bool time()", &["compBinOp"], false),
    ("time() {{.arithBinOp}} time()", &["arithBinOp"], false),
    ("time() {{.compBinOp}} bool time()", &["compBinOp"], false),
    ("time() {{.binOp}} demo_memory_usage_bytes", &["binOp"], false),
    ("demo_memory_usage_bytes {{.binOp}} time()", &["binOp"], false),
    ("{{.simpleTimeAggrOp}}_over_time(demo_memory_usage_bytes[{{.range}}])", &["simpleTimeAggrOp", "range"], false),
    ("quantile_over_time({{.quantile}}, demo_memory_usage_bytes[{{.range}}])", &["quantile", "range"], false),
    ("timestamp(demo_num_cpus)", &[], false),
    ("timestamp(timestamp(demo_num_cpus))", &[], false),
    ("{{.simpleMathFunc}}(demo_memory_usage_bytes)", &["simpleMathFunc"], false),
    ("{{.simpleMathFunc}}(-demo_memory_usage_bytes)", &["simpleMathFunc"], false),
    ("{{.extrapolatedRateFunc}}(nonexistent_metric[5m])", &["extrapolatedRateFunc"], false),
    ("{{.extrapolatedRateFunc}}(demo_cpu_usage_seconds_total[{{.range}}])", &["extrapolatedRateFunc", "range"], false),
    ("deriv(demo_disk_usage_bytes[{{.range}}])", &["range"], false),
    ("predict_linear(demo_disk_usage_bytes[{{.range}}], 600)", &["range"], false),
    ("time()", &[], false),
    (r#"label_replace(demo_num_cpus, "job", "destination-value-$1", "instance", "demo.promlabs.com:(.*)")"#, &[], false),
    (r#"label_replace(demo_num_cpus, "job", "destination-value-$1", "instance", "host:(.*)")"#, &[], false),
    (r#"label_replace(demo_num_cpus, "job", "$1-$2", "instance", "local(.*):(.*)")"#, &[], false),
    (r#"label_replace(demo_num_cpus, "job", "value-$1", "nonexistent-src", "source-value-(.*)")"#, &[], false),
    (r#"label_replace(demo_num_cpus, "job", "value-$1", "nonexistent-src", "(.*)")"#, &[], false),
    (r#"label_replace(demo_num_cpus, "job", "value-$1", "instance", "non-matching-regex")"#, &[], false),
    (r#"label_replace(demo_num_cpus, "job", "", "dst", ".*")"#, &[], false),
    (r#"label_replace(demo_num_cpus, "job", "value-$1", "src", "(.*")"#, &[], true),
    (r#"label_replace(demo_num_cpus, "\xff", "", "src", "(.*)")"#, &[], true),
    (r#"label_replace(demo_num_cpus, "instance", "", "", "")"#, &[], true),
    (r#"label_join(demo_num_cpus, "new_label", "-", "instance", "job")"#, &[], false),
    (r#"label_join(demo_num_cpus, "job", "-", "instance", "job")"#, &[], false),
    (r#"label_join(demo_num_cpus, "job", "-", "instance")"#, &[], false),
    (r#"label_join(demo_num_cpus, "\xff", "-", "instance")"#, &[], true),
    ("{{.dateFunc}}()", &["dateFunc"], false),
    ("{{.dateFunc}}(demo_batch_last_success_timestamp_seconds offset {{.offset}})", &["dateFunc", "offset"], false),
    ("{{.instantRateFunc}}(demo_cpu_usage_seconds_total[{{.range}}])", &["instantRateFunc", "range"], false),
    ("{{.clampFunc}}(demo_memory_usage_bytes, 2)", &["clampFunc"], false),
    ("clamp(demo_memory_usage_bytes, 0, 1)", &[], false),
    ("clamp(demo_memory_usage_bytes, 0, 1000000000000)", &[], false),
    ("clamp(demo_memory_usage_bytes, 1000000000000, 0)", &[], false),
    ("clamp(demo_memory_usage_bytes, 1000000000000, 1000000000000)", &[], false),
    ("resets(demo_cpu_usage_seconds_total[{{.range}}])", &["range"], false),
    ("changes(demo_batch_last_success_timestamp_seconds[{{.range}}])", &["range"], false),
    ("vector(1.23)", &[], false),
    ("vector(time())", &[], false),
    ("histogram_quantile({{.quantile}}, rate(demo_api_request_duration_seconds_bucket[1m]))", &["quantile"], false),
    ("histogram_quantile(0.9, nonexistent_metric)", &[], false),
    ("histogram_quantile(0.9, demo_memory_usage_bytes)", &[], false),
    (r#"histogram_quantile(0.9, {__name__=~"demo_api_request_duration_seconds_.+"})"#, &[], false),
    (r#"count_values("value", demo_api_request_duration_seconds_bucket)"#, &[], false),
    ("absent(demo_memory_usage_bytes)", &[], false),
    ("absent(nonexistent_metric_name)", &[], false),
    ("max_over_time((time() - max(demo_batch_last_success_timestamp_seconds) < 1000)[5m:10s] offset 5m)", &[], false),
    ("avg_over_time(rate(demo_cpu_usage_seconds_total[1m])[2m:10s])", &[], false),
];

/// Every variant of `template` (the first argument varies slowest, as the tester's).
fn expand(template: &str, args: &[&str]) -> Vec<String> {
    let Some((first, rest)) = args.split_first() else {
        return vec![template.to_owned()];
    };
    variants(first)
        .iter()
        .flat_map(|v| expand(&template.replace(&format!("{{{{.{first}}}}}"), v), rest))
        .collect()
}

/// The outcome of the query set against one collector.
struct Score {
    total: usize,
    unsupported: Vec<String>,
    differ: Vec<String>,
}

impl Score {
    fn passed(&self) -> usize {
        self.total - self.unsupported.len() - self.differ.len()
    }
}

fn score(
    collector: std::net::SocketAddr,
    reference: &[(String, Answer)],
    window: (i64, i64),
) -> Score {
    let mut score = Score {
        total: reference.len(),
        unsupported: Vec::new(),
        differ: Vec::new(),
    };
    for (query, theirs) in reference {
        let ours = ask_range(collector, query, window, 10);
        if let Err(e) = &ours {
            if e.contains("not supported by obs-collector") {
                score.unsupported.push(query.clone());
                continue;
            }
        }
        if let Some(why) = difference(&ours, theirs) {
            score.differ.push(format!("{query}\n    {why}"));
        }
    }
    score
}

#[test]
fn the_compliance_query_set_answers_as_prometheus_does() {
    let dir = temp_dir("compliance");
    // Two days ago at noon, on a whole minute: raw history, well within retention.
    let now_s = common::now_s();
    let end_s = now_s / 86_400 * 86_400 - 2 * 86_400 + 43_200;
    let file = dir.join("demo.om");
    std::fs::write(&file, demo_metrics(end_s * 1000)).unwrap();
    let prom = Prometheus::start_backfilled(
        "global:\n  scrape_interval: 5s\nscrape_configs: []\n",
        &["--storage.tsdb.retention.time=10y"],
        std::slice::from_ref(&file),
    )
    .unwrap();
    // The tester's window: 10 minutes at a 10 s step, ending a minute before the samples do.
    let window = (end_s - 660, end_s - 60);
    let mut reference = Vec::new();
    for (template, args, should_fail) in CASES {
        for query in expand(template, args) {
            let theirs = ask_range(prom.addr, &query, window, 10);
            assert_eq!(
                theirs.is_err(),
                *should_fail,
                "{query}: Prometheus answered {theirs:?}"
            );
            reference.push((query, theirs));
        }
    }
    assert!(reference.len() > 500, "{} cases", reference.len());

    // As Prometheus 2.42 evaluates: every case the same.
    let v2 =
        common::collector_over_import(&temp_dir("compliance-v2"), &file, &["--query.prometheus-2"]);
    let exact = score(v2.addr, &reference, window);
    println!(
        "compliance, --query.prometheus-2: {} of {} passed",
        exact.passed(),
        exact.total
    );
    assert!(
        exact.differ.is_empty() && exact.unsupported.is_empty(),
        "{} differ, unsupported {:?}:\n{}",
        exact.differ.len(),
        exact.unsupported,
        exact.differ.join("\n")
    );

    // As Prometheus 3 evaluates (the default): what differs is where Prometheus 3 changed the
    // answer (ranges open on the left: a subquery's points sit on the edge of its windows;
    // histogram_quantile's tolerance of rate's floating point noise).
    let v3 = common::collector_over_import(&temp_dir("compliance-v3"), &file, &[]);
    let default = score(v3.addr, &reference, window);
    println!(
        "compliance, default: {} of {} passed ({:.1}%), {} unsupported; differing:\n{}",
        default.passed(),
        default.total,
        100.0 * default.passed() as f64 / default.total as f64,
        default.unsupported.len(),
        default.differ.join("\n")
    );
    assert!(default.unsupported.is_empty(), "{:?}", default.unsupported);
    for d in &default.differ {
        assert!(
            d.contains("[2m:10s]") || d.starts_with("histogram_quantile("),
            "a difference Prometheus 3 does not explain: {d}"
        );
    }
    assert!(default.passed() * 100 >= default.total * 95);
}
