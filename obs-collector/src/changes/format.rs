//! How verdicts and reports write their numbers: latencies in ms or s, counts with thousands
//! separators, changes as signed percentages or percentage points.

/// `410 ms`, `1.25 s`.
pub fn latency(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "-".into();
    }
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

/// `18,342`.
pub fn count(n: f64) -> String {
    if !n.is_finite() {
        return "-".into();
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// A relative change: `+41%`, `-3%`.
pub fn relative(change: f64) -> String {
    if !change.is_finite() {
        return "-".into();
    }
    format!("{:+.0}%", change * 100.0)
}

/// A ratio as a percentage: `2.31%`.
pub fn percent(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "-".into();
    }
    format!("{:.2}%", ratio * 100.0)
}

/// An absolute change of a ratio: `+2.5 pp`.
pub fn points(change: f64) -> String {
    format!("{:+.1} pp", change * 100.0)
}

/// A metric's value as text: the error ratio as a percentage, a latency in ms or s.
pub fn metric(metric: &str, value: f64) -> String {
    if metric == "error_ratio" {
        percent(value)
    } else {
        latency(value)
    }
}

/// A metric's change as text: points for the error ratio, a percentage for a latency.
pub fn change(metric: &str, change: f64) -> String {
    if metric == "error_ratio" {
        points(change)
    } else {
        relative(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(latency(0.41), "410 ms");
        assert_eq!(latency(1.254), "1.25 s");
        assert_eq!(count(18_342.4), "18,342");
        assert_eq!(count(52_110.0), "52,110");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1_000_000.0), "1,000,000");
        assert_eq!(relative(0.4138), "+41%");
        assert_eq!(relative(-0.03), "-3%");
        assert_eq!(percent(0.0231), "2.31%");
        assert_eq!(points(0.025), "+2.5 pp");
        assert_eq!(metric("p95", 0.29), "290 ms");
        assert_eq!(change("error_ratio", 0.01), "+1.0 pp");
    }
}
