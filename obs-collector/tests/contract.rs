//! The contract between obs-core and everything that reads its metrics: every metric and label
//! name used in `dashboards/` and `alerts/` is one `obs::metrics::names` defines (or one
//! Prometheus adds: `up`, `job`, `instance`, `le`), and the dashboard has the structure the
//! README's Dashboard section describes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use obs::metrics::names;
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Metric and label names an expression uses.
#[derive(Default, Debug)]
struct Used {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
    /// Labels the expression creates itself (label_replace's destination).
    created: BTreeSet<String>,
    /// Every selector's matchers, to check the dashboard's variable filters.
    selectors: Vec<Vec<(String, String)>>,
}

fn walk(e: &Expr, used: &mut Used) {
    match e {
        Expr::VectorSelector(vs) => {
            if let Some(n) = &vs.name {
                used.metrics.insert(n.clone());
            }
            let mut matchers = Vec::new();
            for m in &vs.matchers.matchers {
                if m.name == "__name__" {
                    used.metrics.insert(m.value.clone());
                } else {
                    used.labels.insert(m.name.clone());
                }
                let op = if matches!(m.op, MatchOp::Re(_)) {
                    "=~"
                } else {
                    "other"
                };
                matchers.push((format!("{}{op}", m.name), m.value.clone()));
            }
            used.selectors.push(matchers);
        }
        Expr::MatrixSelector(ms) => walk(&Expr::VectorSelector(ms.vs.clone()), used),
        Expr::Aggregate(a) => {
            if let Some(LabelModifier::Include(l) | LabelModifier::Exclude(l)) = &a.modifier {
                used.labels.extend(l.labels.iter().cloned());
            }
            walk(&a.expr, used);
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if let Some(LabelModifier::Include(l) | LabelModifier::Exclude(l)) = &m.matching {
                    used.labels.extend(l.labels.iter().cloned());
                }
            }
            walk(&b.lhs, used);
            walk(&b.rhs, used);
        }
        Expr::Call(c) => {
            let string = |i: usize| match c.args.args.get(i).map(|a| a.as_ref()) {
                Some(Expr::StringLiteral(s)) => s.val.clone(),
                _ => String::new(),
            };
            if c.func.name == "label_replace" {
                used.created.insert(string(1));
                used.labels.insert(string(3));
            }
            for a in &c.args.args {
                walk(a, used);
            }
        }
        Expr::Paren(p) => walk(&p.expr, used),
        Expr::Unary(u) => walk(&u.expr, used),
        Expr::Subquery(s) => walk(&s.expr, used),
        _ => {}
    }
}

fn parse(expr: &str, what: &str) -> Used {
    let ast = parser::parse(expr).unwrap_or_else(|e| panic!("{what}: {e}\n{expr}"));
    let mut used = Used::default();
    walk(&ast, &mut used);
    used
}

/// Rule expressions and recording-rule names of every rule file in alerts/.
fn rules() -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut exprs = Vec::new();
    let mut recorded = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("alerts")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rules.yml") {
            continue;
        }
        let file: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for g in file["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                if let Some(rec) = r["record"].as_str() {
                    recorded.insert(rec.to_owned());
                }
                let id = r["alert"].as_str().or(r["record"].as_str()).unwrap();
                exprs.push((
                    format!("{name}: {id}"),
                    r["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    (exprs, recorded)
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("dashboards/obs-red.json")).unwrap())
        .unwrap()
}

/// `(where, expr)` of every panel query and every variable's `label_values` selector.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {:?} {}", p["title"], t["refId"]),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap();
            let (selector, label) = inner.rsplit_once(',').unwrap();
            out.push((
                format!("variable {}", v["name"]),
                format!("count by ({}) ({selector})", label.trim()),
            ));
        }
    }
    out
}

#[test]
fn every_name_in_dashboards_and_alerts_is_one_obs_emits() {
    let (rule_exprs, recorded) = rules();
    let mut metrics: BTreeSet<String> = names::ALL_METRICS.iter().map(|m| m.to_string()).collect();
    for suffix in ["_bucket", "_sum", "_count"] {
        metrics.insert(format!("{}{suffix}", names::HTTP_SERVER_REQUEST_DURATION));
        metrics.insert(format!("{}{suffix}", names::MESSAGING_PROCESS_DURATION));
        metrics.insert(format!("{}{suffix}", names::DB_CLIENT_OPERATION_DURATION));
    }
    metrics.insert("up".into()); // written by the scraper, Prometheus' or obs-collector's
    metrics.extend(recorded);
    let mut labels: BTreeSet<String> = names::ALL_LABELS.iter().map(|l| l.to_string()).collect();
    labels.extend(["job", "instance", "le"].map(String::from));

    // The check can fail: a peer's names are caught.
    let foreign = parse(
        r#"sum by (path) (rate(axum_http_requests_total{endpoint="/"}[5m]))"#,
        "control",
    );
    assert!(foreign.metrics.iter().any(|m| !metrics.contains(m)));
    assert!(foreign.labels.iter().any(|l| !labels.contains(l)));

    let d = dashboard();
    let mut checked = 0;
    for (what, expr) in rule_exprs.into_iter().chain(dashboard_queries(&d)) {
        let used = parse(&expr.replace("$__rate_interval", "5m"), &what);
        for m in &used.metrics {
            assert!(
                metrics.contains(m),
                "{what}: metric {m:?} is not defined by obs::metrics::names"
            );
        }
        for l in used.labels.iter().filter(|l| !used.created.contains(*l)) {
            assert!(
                labels.contains(l),
                "{what}: label {l:?} is not one obs emits"
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} expressions found");
}

#[test]
fn the_dashboard_structure() {
    let d = dashboard();
    let uid = d["uid"].as_str().unwrap();
    assert!(
        !uid.is_empty()
            && uid.len() <= 40
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["editable"], false);
    assert!(
        d.get("__inputs").is_none(),
        "no __inputs: the same file works for UI import and provisioning"
    );
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job", "instance", "route"]);
    let ds = Value::String("${datasource}".into());
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(!title.is_empty() && ids.insert(p["id"].as_i64().unwrap()));
        if p["type"] == "row" {
            continue; // a heading: no query, no unit
        }
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 20),
            "{title}: description"
        );
        assert!(
            p["fieldConfig"]["defaults"]["unit"].as_str().is_some(),
            "{title}: unit"
        );
        assert_eq!(p["datasource"]["uid"], ds, "{title}");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], ds, "{title}");
            let expr = t["expr"].as_str().unwrap();
            let ranges = expr.matches('[').count();
            assert_eq!(
                ranges,
                expr.matches("[$__rate_interval]").count(),
                "{title}: every range is $__rate_interval: {expr}"
            );
            let used = parse(&expr.replace("$__rate_interval", "5m"), title);
            for s in &used.selectors {
                assert!(
                    s.contains(&("job=~".into(), "$job".into())),
                    "{title}: selector without job=~\"$job\": {expr}"
                );
                assert!(
                    s.contains(&("instance=~".into(), "$instance".into())),
                    "{title}: selector without instance: {expr}"
                );
            }
        }
    }
    // The alert thresholds are drawn on the error-ratio and p95 panels.
    let threshold = |title: &str| {
        let p = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title)
            .unwrap();
        assert_eq!(
            p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"],
            "line+area"
        );
        p["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(threshold("Error ratio (5xx)"), 0.05);
    assert_eq!(threshold("Latency p50 / p95 / p99"), 2.0);
    assert_eq!(threshold("Job failure ratio by name"), 0.05);
}
