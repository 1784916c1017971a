//! Differential test against Prometheus itself: the same input series are written as a
//! `promtool test rules` file and fed to the collector's engine; both evaluate the shipped
//! `alerts/obs-red.rules.yml` every 15 s, and the pending/firing alerts (`ALERTS`) of the
//! collector at every evaluation are asserted by promtool.
//!
//! Debian ships Prometheus 2.42, whose range and lookback selection is closed on both ends;
//! Prometheus 3 made it left-open. The collector implements 3.x by default and 2.x selection
//! behind `Store::left_closed`: the exact comparison runs in 2.x mode, and the 3.x results are
//! compared too, with every difference listed (they are due to that boundary alone).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use obs_collector::labels::Labels;
use obs_collector::rules::{self, Kind, State};
use obs_collector::store::Store;

const STEP_S: i64 = 15;
const COUNT: &str = "http_server_request_duration_seconds_count";
const BUCKET: &str = "http_server_request_duration_seconds_bucket";
const LES: [&str; 4] = ["0.1", "2", "2.5", "+Inf"];

/// A series: metric name, labels, value per 15 s step (`None` = no sample).
struct Series {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    values: Vec<Option<f64>>,
}

struct Scenario {
    name: &'static str,
    series: Vec<Series>,
    steps: usize,
}

/// Cumulative counters from per-step increments.
fn counter(increments: impl Fn(usize) -> f64, steps: usize) -> Vec<Option<f64>> {
    let mut total = 0.0;
    (0..steps)
        .map(|i| {
            if i > 0 {
                total += increments(i);
            }
            Some(total)
        })
        .collect()
}

/// Request counters of job `app`: `ok(i)` 200s and `err(i)` 500s per step.
fn traffic(ok: impl Fn(usize) -> f64, err: impl Fn(usize) -> f64, steps: usize) -> Vec<Series> {
    let status = |code: &str| {
        vec![
            ("job", "app".to_owned()),
            ("http_response_status_code", code.to_owned()),
        ]
    };
    vec![
        Series {
            name: COUNT,
            labels: status("200"),
            values: counter(&ok, steps),
        },
        Series {
            name: COUNT,
            labels: status("500"),
            values: counter(&err, steps),
        },
    ]
}

/// Latency histogram of job `app`: per step, `fast` requests under 0.1 s and `slow` ones in
/// the bucket whose upper bound is `slow_le` (`2.5`: just above 2 s; `2`: just below).
fn latency(
    fast: impl Fn(usize) -> f64,
    slow: impl Fn(usize) -> f64,
    slow_le: &str,
    steps: usize,
) -> Vec<Series> {
    let mut out = Vec::new();
    for le in LES {
        let includes_slow = match slow_le {
            "2" => le != "0.1",
            _ => le == "2.5" || le == "+Inf",
        };
        let values = counter(
            |i| fast(i) + if includes_slow { slow(i) } else { 0.0 },
            steps,
        );
        out.push(Series {
            name: BUCKET,
            labels: vec![
                ("job", "app".into()),
                ("http_response_status_code", "200".into()),
                ("le", le.into()),
            ],
            values,
        });
    }
    out.push(Series {
        name: COUNT,
        labels: vec![
            ("job", "app".into()),
            ("http_response_status_code", "200".into()),
        ],
        values: counter(|i| fast(i) + slow(i), steps),
    });
    out
}

/// A job counter of job `worker`: `runs(i)` runs of `name` per step ending in `error_type`.
fn jobs(
    name: &'static str,
    error_type: Option<&'static str>,
    runs: impl Fn(usize) -> f64,
    steps: usize,
) -> Series {
    let mut labels = vec![
        ("job", "worker".to_owned()),
        ("messaging_destination_name", name.to_owned()),
    ];
    labels.extend(error_type.map(|e| ("error_type", e.to_owned())));
    Series {
        name: "messaging_process_duration_seconds_count",
        labels,
        values: counter(runs, steps),
    }
}

fn scenarios() -> Vec<Scenario> {
    let steps = 60; // 15 minutes
    let between = |a: usize, b: usize| move |i: usize| (a..b).contains(&i);
    let up = |values: Vec<Option<f64>>| Series {
        name: "up",
        labels: vec![("job", "app".into()), ("instance", "app:9464".into())],
        values,
    };
    vec![
        Scenario {
            name: "sustained 100% errors",
            steps,
            series: traffic(
                |_| 0.0,
                |i| if between(8, 40)(i) { 20.0 } else { 0.0 },
                steps,
            ),
        },
        Scenario {
            name: "one-minute error burst",
            steps,
            series: traffic(
                |_| 20.0,
                |i| if between(10, 14)(i) { 20.0 } else { 0.0 },
                steps,
            ),
        },
        Scenario {
            name: "4% errors",
            steps,
            series: traffic(|_| 48.0, |_| 2.0, steps),
        },
        Scenario {
            name: "traffic below the guard",
            steps,
            series: traffic(|_| 1.0, |_| 1.0, steps),
        },
        Scenario {
            name: "p95 just above 2s",
            steps,
            series: latency(
                |_| 18.0,
                |i| if between(8, 40)(i) { 2.0 } else { 0.0 },
                "2.5",
                steps,
            ),
        },
        Scenario {
            name: "p95 just below 2s",
            steps,
            series: latency(
                |_| 18.0,
                |i| if between(8, 40)(i) { 2.0 } else { 0.0 },
                "2",
                steps,
            ),
        },
        Scenario {
            name: "counter reset mid-incident",
            steps,
            series: {
                let mut s = traffic(
                    |_| 10.0,
                    |i| if between(8, 45)(i) { 10.0 } else { 0.0 },
                    steps,
                );
                for series in &mut s {
                    // The service restarts at step 25: counters start again from zero.
                    let base = series.values[24].unwrap();
                    for v in series.values.iter_mut().skip(25) {
                        *v = v.map(|x| x - base);
                    }
                }
                s
            },
        },
        Scenario {
            name: "one job name failing, one cancelled at a deploy, one below the guard",
            steps,
            series: vec![
                jobs("send_email", None, |_| 8.0, steps),
                jobs(
                    "send_email",
                    Some("smtp::Error"),
                    |i| f64::from(u8::from(between(8, 40)(i))),
                    steps,
                ),
                jobs(
                    "send_email",
                    Some("panic"),
                    |i| f64::from(u8::from(between(8, 40)(i))),
                    steps,
                ),
                jobs("charge_card", None, |_| 8.0, steps),
                jobs(
                    "charge_card",
                    Some("cancelled"),
                    |i| if between(8, 40)(i) { 4.0 } else { 0.0 },
                    steps,
                ),
                jobs("digest", None, |_| 1.0, steps),
                jobs("digest", Some("db::Error"), |_| 1.0, steps),
            ],
        },
        Scenario {
            name: "target down",
            steps,
            series: vec![up((0..steps)
                .map(|i| Some(if between(10, 30)(i) { 0.0 } else { 1.0 }))
                .collect())],
        },
    ]
}

fn labels_of(s: &Series) -> Labels {
    let mut pairs: Vec<(String, String)> = s
        .labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    pairs.push(("__name__".into(), s.name.into()));
    Labels::new(pairs)
}

/// `ALERTS` label sets at every evaluation time (seconds).
type Timeline = Vec<(i64, BTreeSet<Labels>)>;

/// The collector's `ALERTS` series at every evaluation.
fn collector_alerts(scenario: &Scenario, left_closed: bool) -> Timeline {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    let mut groups = rules::load(
        "obs-red.rules.yml",
        &text,
        std::time::Duration::from_secs(15),
        false,
    )
    .unwrap();
    let mut store = Store::new(3_600_000);
    store.left_closed = left_closed;
    let mut out = Vec::new();
    for step in 0..scenario.steps as i64 {
        let t = step * STEP_S * 1000;
        for s in &scenario.series {
            if let Some(v) = s.values[step as usize] {
                store.append(&labels_of(s), t, v);
            }
        }
        let mut alerts = BTreeSet::new();
        for rule in &mut groups[0].rules {
            let Kind::Alerting(a) = &mut rule.kind else {
                continue;
            };
            a.eval(t, &store, &Labels::default()).unwrap();
            for alert in a.alerts().filter(|x| x.state != State::Inactive) {
                let mut l = alert.labels.clone();
                l.set("__name__", "ALERTS");
                l.set("alertstate", alert.state.as_str());
                alerts.insert(l);
            }
        }
        out.push((step * STEP_S, alerts));
    }
    out
}

fn rules_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../alerts/obs-red.rules.yml")
        .canonicalize()
        .unwrap()
}

fn promql_labels(l: &Labels) -> String {
    let inner: Vec<String> = l
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("ALERTS{{{}}}", inner.join(","))
}

/// A promtool test file asserting the collector's `ALERTS` at every evaluation.
fn promtool_file(results: &[(&Scenario, Timeline)]) -> String {
    let mut f = format!(
        "rule_files:\n  - {}\nevaluation_interval: 15s\ntests:\n",
        rules_path().display()
    );
    for (scenario, alerts) in results {
        let _ = writeln!(
            f,
            "  # {}\n  - interval: 15s\n    input_series:",
            scenario.name
        );
        for s in &scenario.series {
            let values: Vec<String> = s
                .values
                .iter()
                .map(|v| v.map_or("_".into(), |x| format!("{x}")))
                .collect();
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let _ = writeln!(
                f,
                "      - series: '{}{{{}}}'\n        values: '{}'",
                s.name,
                labels.join(","),
                values.join(" ")
            );
        }
        f.push_str("    promql_expr_test:\n");
        for (t, set) in alerts {
            let _ = writeln!(f, "      - expr: ALERTS\n        eval_time: {t}s");
            if set.is_empty() {
                f.push_str("        exp_samples: []\n");
            } else {
                f.push_str("        exp_samples:\n");
                for l in set {
                    let _ = writeln!(
                        f,
                        "          - labels: '{}'\n            value: 1",
                        promql_labels(l)
                    );
                }
            }
        }
    }
    f
}

fn run_promtool(file: &str) -> (bool, String) {
    let path = std::env::temp_dir().join(format!("obs-differential-{}.yml", std::process::id()));
    std::fs::write(&path, file).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_file(&path);
    (out.status.success(), text)
}

fn names(set: &BTreeSet<Labels>) -> Vec<String> {
    set.iter()
        .map(|l| {
            format!(
                "{}:{}",
                l.get("alertname").unwrap(),
                l.get("alertstate").unwrap()
            )
        })
        .collect()
}

/// `0s - | 135s HighErrorRate:pending | 255s HighErrorRate:firing | ...`
fn summary(alerts: &[(i64, BTreeSet<Labels>)]) -> String {
    let mut out = Vec::new();
    let mut last = None;
    for (t, set) in alerts {
        let now = names(set).join(",");
        if last.as_ref() != Some(&now) {
            out.push(format!("{t}s {}", if now.is_empty() { "-" } else { &now }));
            last = Some(now);
        }
    }
    out.join(" | ")
}

#[test]
fn collector_and_promtool_agree_on_every_evaluation() {
    let scenarios = scenarios();
    let results: Vec<_> = scenarios
        .iter()
        .map(|s| (s, collector_alerts(s, true)))
        .collect();
    for (s, alerts) in &results {
        eprintln!("{:<28} {}", s.name, summary(alerts));
    }
    let fired = |name: &str, alert: &str| {
        results
            .iter()
            .find(|(s, _)| s.name == name)
            .unwrap()
            .1
            .iter()
            .any(|(_, set)| {
                set.iter().any(|l| {
                    l.get("alertname") == Some(alert) && l.get("alertstate") == Some("firing")
                })
            })
    };
    assert!(fired("sustained 100% errors", "HighErrorRate"));
    assert!(
        !fired("one-minute error burst", "HighErrorRate"),
        "a 1-minute burst must not fire with for: 2m"
    );
    assert!(!fired("4% errors", "HighErrorRate"));
    assert!(!fired("traffic below the guard", "HighErrorRate"));
    assert!(fired("p95 just above 2s", "HighLatencyP95"));
    assert!(!fired("p95 just below 2s", "HighLatencyP95"));
    assert!(fired("counter reset mid-incident", "HighErrorRate"));
    assert!(fired("target down", "TargetDown"));

    let (ok, output) = run_promtool(&promtool_file(&results));
    assert!(
        ok,
        "promtool disagrees with the collector (2.x selection):\n{output}"
    );

    // Negative control: the same file with one evaluation's alerts dropped must fail.
    let mut tampered: Vec<_> = results.iter().map(|(s, a)| (*s, a.clone())).collect();
    let slot = tampered[0]
        .1
        .iter_mut()
        .find(|(_, set)| !set.is_empty())
        .unwrap();
    slot.1.clear();
    let (ok, output) = run_promtool(&promtool_file(&tampered));
    assert!(
        !ok && output.contains("FAILED"),
        "promtool must catch a wrong expectation:\n{output}"
    );

    // Prometheus 3 selection (the collector's default): list where it differs from 2.x.
    let mut differences = Vec::new();
    for (s, alerts_2x) in &results {
        let alerts_3x = collector_alerts(s, false);
        for ((t, a), (_, b)) in alerts_2x.iter().zip(&alerts_3x) {
            if a != b {
                differences.push(format!(
                    "{} @{t}s: 2.x {:?} vs 3.x {:?}",
                    s.name,
                    names(a),
                    names(b)
                ));
            }
        }
    }
    eprintln!(
        "3.x vs 2.x selection differences ({}):\n{}",
        differences.len(),
        differences.join("\n")
    );
}
