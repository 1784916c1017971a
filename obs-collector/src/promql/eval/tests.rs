use super::super::compile;
use super::*;
use crate::store::Store;

const S: i64 = 1000;

fn store() -> Store {
    let mut st = Store::new(3600 * S);
    let series = [
        (
            vec![("__name__", "req_count"), ("job", "a"), ("code", "200")],
            10.0,
        ),
        (
            vec![("__name__", "req_count"), ("job", "a"), ("code", "500")],
            2.0,
        ),
        (
            vec![("__name__", "req_count"), ("job", "b"), ("code", "200")],
            5.0,
        ),
        (
            vec![("__name__", "up"), ("job", "a"), ("instance", "x")],
            1.0,
        ),
        (
            vec![("__name__", "up"), ("job", "b"), ("instance", "y")],
            0.0,
        ),
    ];
    for (labels, per_step) in series {
        let l = Labels::from_pairs(&labels);
        let gauge = l.name() == Some("up");
        for i in 0..=8 {
            st.append(
                &l,
                i * 15 * S,
                if gauge { per_step } else { per_step * i as f64 },
            );
        }
    }
    st
}

fn run(expr: &str) -> Vec<(String, f64)> {
    match eval(&compile(expr).unwrap(), &store(), 120 * S).unwrap() {
        Value::Vector(v) => {
            let mut out: Vec<(String, f64)> = v
                .into_iter()
                .map(|s| (s.labels.to_string(), s.value))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        Value::Scalar(s) => vec![("scalar".into(), s)],
    }
}

#[test]
fn selectors_with_all_matcher_kinds() {
    assert_eq!(
        run("up == 0"),
        [("up{instance=\"y\", job=\"b\"}".to_owned(), 0.0)]
    );
    assert_eq!(run(r#"req_count{code=~"5.."}"#).len(), 1);
    assert_eq!(
        run(r#"req_count{code!~"5..", job!="b"}"#),
        [("req_count{code=\"200\", job=\"a\"}".to_owned(), 80.0)]
    );
    assert_eq!(
        run(r#"req_count{missing=""}"#).len(),
        3,
        "an absent label matches the empty string"
    );
}

#[test]
fn rate_sum_by_and_ratio() {
    // 4 samples in (60s, 120s] at 15 s spacing; increase 3 steps * per_step, extrapolated by 15/45.
    let r = run(r#"sum by (job) (increase(req_count[1m]))"#);
    assert_eq!(
        r,
        [
            ("{job=\"a\"}".to_owned(), 48.0),
            ("{job=\"b\"}".to_owned(), 20.0)
        ]
    );
    let ratio = run(
        r#"sum by (job) (rate(req_count{code=~"5.."}[1m])) / sum by (job) (rate(req_count[1m]))"#,
    );
    assert_eq!(ratio.len(), 1);
    assert!((ratio[0].1 - 2.0 / 12.0).abs() < 1e-12);
}

#[test]
fn set_operators_with_on_and_ignoring() {
    let and = run(r#"sum by (job) (req_count) > 50 and on (job) up == 1"#);
    assert_eq!(and, [("{job=\"a\"}".to_owned(), 96.0)]);
    let unless = run(r#"up unless on (job) req_count{code="500"}"#);
    assert_eq!(unless, [("up{instance=\"y\", job=\"b\"}".to_owned(), 0.0)]);
    let or = run(r#"up{job="a"} or ignoring (instance) up"#);
    assert_eq!(or.len(), 2);
}

#[test]
fn aggregations() {
    assert_eq!(run("count(req_count)"), [("{}".to_owned(), 3.0)]);
    assert_eq!(
        run("max without (code) (req_count)"),
        [
            ("{job=\"a\"}".to_owned(), 80.0),
            ("{job=\"b\"}".to_owned(), 40.0)
        ]
    );
    assert_eq!(run("min by (job) (req_count)")[0].1, 16.0);
    assert_eq!(run("avg(up)"), [("{}".to_owned(), 0.5)]);
}

#[test]
fn arithmetic_and_bool() {
    assert_eq!(
        run("up * 2 + 1")[0].0,
        "{instance=\"x\", job=\"a\"}",
        "arithmetic drops the name"
    );
    assert_eq!(
        run("up > bool 0").iter().map(|s| s.1).collect::<Vec<_>>(),
        [1.0, 0.0]
    );
    assert_eq!(run("2 > bool 1"), [("scalar".to_owned(), 1.0)]);
    assert_eq!(run("1 < up").len(), 0);
    assert_eq!(
        run("0 < up"),
        [("up{instance=\"x\", job=\"a\"}".to_owned(), 1.0)]
    );
}

#[test]
fn one_to_one_matching_errors_on_duplicates() {
    let err = eval(
        &compile("req_count / on (job) up").unwrap(),
        &store(),
        120 * S,
    )
    .unwrap_err();
    assert!(
        matches!(&err, QueryError::Eval(m) if m.contains("multiple matches")),
        "{err}"
    );
}

#[test]
fn histogram_quantile_groups_without_le() {
    let mut st = Store::new(3600 * S);
    for (le, c) in [
        ("0.1", 50.0),
        ("0.2", 70.0),
        ("1.0", 110.0),
        ("+Inf", 120.0),
    ] {
        let l = Labels::from_pairs(&[("__name__", "h_bucket"), ("le", le), ("job", "a")]);
        st.append(&l, 0, c);
    }
    let v = eval(
        &compile("histogram_quantile(0.5, h_bucket)").unwrap(),
        &st,
        0,
    )
    .unwrap();
    let Value::Vector(v) = v else { panic!() };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].labels.to_string(), "{job=\"a\"}");
    assert!((v[0].value - 0.15).abs() < 1e-12);
}

/// The deepest queries the nesting limit lets through compile and evaluate, instant and
/// range, on a thread with tokio's 2 MiB stack, unoptimised (the build with the largest
/// frames); one level more is refused by name.
#[test]
fn the_deepest_queries_allowed_run() {
    use crate::promql::nesting::MAX_DEPTH;
    let levels = MAX_DEPTH - 1; // around one selector or number
    let nested = |open: &str, inner: &str, close: &str, n: usize| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    let queries = [
        nested("sum(", "up", ")", levels),
        nested("abs(", "up", ")", levels),
        nested("(", "up", ")", levels),
        nested(
            "label_replace(",
            "up",
            ", \"a\", \"$1\", \"job\", \"(.*)\")",
            levels,
        ),
        nested("histogram_quantile(0.5, ", "req_count", ")", levels),
        nested("topk(1, ", "up", ")", levels),
        nested("-(", "up", ")", levels / 2),
        format!("{}up", "up + on(job) group_left ".repeat(levels)),
        format!("{}1", "1 - ".repeat(levels)),
        format!("{}up", "up or ".repeat(levels)),
        nested("max_over_time((", "up", ")[1m:15s])", levels / 3),
        nested("vector(scalar(", "up", "))", levels / 2),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let st = store();
            let steps = Steps {
                start: 0,
                end: 120 * S,
                step: 15 * S,
            };
            for q in &queries {
                let expr = compile(q).unwrap_or_else(|e| panic!("{}: {e}", &q[..60]));
                eval_instant(&expr, &st, 60 * S, Limits::NONE)
                    .unwrap_or_else(|e| panic!("{}: {e}", &q[..60]));
                eval_range(&expr, &st, steps, Limits::NONE)
                    .unwrap_or_else(|e| panic!("{}: {e}", &q[..60]));
            }
        })
        .unwrap();
    handle.join().unwrap();
    let too_deep = compile(&nested("abs(", "up", ")", MAX_DEPTH)).unwrap_err();
    assert!(too_deep.0.contains("levels deep"), "{too_deep}");
}
