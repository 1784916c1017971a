//! The subset of Prometheus' Go templates used in alert labels and annotations.
//!
//! `{{ $labels.NAME }}`, `{{ $externalLabels.NAME }}`, `{{ $value }}` (also `.Labels.NAME`,
//! `.Value`), string and number literals, pipelines (`{{ $value | humanizePercentage }}`) and
//! calls (`{{ humanize $value }}`, `{{ printf "%.2f" $value }}`) with the functions
//! `humanize`, `humanize1024`, `humanizePercentage`, `humanizeDuration`, `printf`, `toUpper`,
//! `toLower`. Templates are checked at load ([`Template::parse`]); at evaluation an error is
//! rendered as `<error expanding template: ...>`, as Prometheus does.

// A template is a rule file's value: it fails with the configuration's error, whose message
// names the construct (`function "x" not defined`, `unterminated string in ...`).
use crate::config::Invalid;
use crate::labels::Labels;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Pipeline(Vec<Command>),
}

#[derive(Debug, Clone)]
struct Command {
    func: Option<Func>,
    args: Vec<Arg>,
}

#[derive(Debug, Clone, Copy)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
}

#[derive(Debug, Clone)]
enum Arg {
    Value,
    Label(String),
    ExternalLabel(String),
    Str(String),
    Num(f64),
}

/// What a template can see.
pub struct Data<'a> {
    pub labels: &'a Labels,
    pub external_labels: &'a Labels,
    pub value: f64,
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
}

impl Val {
    fn num(&self) -> Result<f64, Invalid> {
        match self {
            Val::Num(n) => Ok(*n),
            Val::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("cannot convert {s:?} to a number").into()),
        }
    }
    fn text(&self) -> String {
        match self {
            Val::Num(n) => go_float(*n),
            Val::Str(s) => s.clone(),
        }
    }
}

impl Template {
    /// Parses `text`, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let mut before = &rest[..open];
            let after_open = &rest[open + 2..];
            let close = after_open.find("}}").ok_or("unclosed action: missing }}")?;
            let mut action = &after_open[..close];
            rest = &after_open[close + 2..];
            if let Some(a) = action.strip_prefix('-') {
                action = a;
                before = before.trim_end();
            }
            if let Some(a) = action.strip_suffix('-') {
                action = a;
                rest = rest.trim_start();
            }
            if !before.is_empty() {
                parts.push(Part::Text(before.to_owned()));
            }
            parts.push(Part::Pipeline(parse_pipeline(action.trim())?));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Renders the template; an evaluation error becomes the whole output, as in Prometheus.
    pub fn expand(&self, data: &Data<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Pipeline(cmds) => match run(cmds, data) {
                    Ok(v) => out.push_str(&v.text()),
                    Err(e) => return format!("<error expanding template: {e}>"),
                },
            }
        }
        out
    }
}

fn parse_pipeline(action: &str) -> Result<Vec<Command>, Invalid> {
    if action.is_empty() {
        return Err("empty action {{ }}".into());
    }
    split_outside_quotes(action, '|')
        .into_iter()
        .map(|c| parse_command(c.trim()))
        .collect()
}

fn parse_command(cmd: &str) -> Result<Command, Invalid> {
    let words = split_words(cmd)?;
    let (first, rest) = words.split_first().ok_or("empty command in pipeline")?;
    let func = match first.as_str() {
        "humanize" => Some(Func::Humanize),
        "humanize1024" => Some(Func::Humanize1024),
        "humanizePercentage" => Some(Func::HumanizePercentage),
        "humanizeDuration" => Some(Func::HumanizeDuration),
        "printf" => Some(Func::Printf),
        "toUpper" => Some(Func::ToUpper),
        "toLower" => Some(Func::ToLower),
        _ => None,
    };
    let args = match func {
        Some(_) => rest
            .iter()
            .map(|w| parse_arg(w))
            .collect::<Result<_, _>>()?,
        None if rest.is_empty() => vec![parse_arg(first)?],
        None => return Err(format!("function {first:?} not defined").into()),
    };
    Ok(Command { func, args })
}

fn parse_arg(word: &str) -> Result<Arg, Invalid> {
    if let Some(s) = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        return Ok(Arg::Str(s.replace("\\\"", "\"").replace("\\n", "\n")));
    }
    if let Some(name) = word
        .strip_prefix("$labels.")
        .or_else(|| word.strip_prefix(".Labels."))
    {
        return Ok(Arg::Label(name.to_owned()));
    }
    if let Some(name) = word
        .strip_prefix("$externalLabels.")
        .or_else(|| word.strip_prefix(".ExternalLabels."))
    {
        return Ok(Arg::ExternalLabel(name.to_owned()));
    }
    match word {
        "$value" | ".Value" => Ok(Arg::Value),
        _ => word
            .parse()
            .map(Arg::Num)
            .map_err(|_| format!("unsupported template term {word:?}").into()),
    }
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_words(s: &str) -> Result<Vec<String>, Invalid> {
    let words: Vec<String> = split_outside_quotes(s, ' ')
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    if words
        .iter()
        .any(|w| w.starts_with('"') && (w.len() < 2 || !w.ends_with('"')))
    {
        return Err(format!("unterminated string in {s:?}").into());
    }
    Ok(words)
}

fn run(cmds: &[Command], data: &Data<'_>) -> Result<Val, Invalid> {
    let mut piped: Option<Val> = None;
    for cmd in cmds {
        let mut args: Vec<Val> = cmd
            .args
            .iter()
            .map(|a| match a {
                Arg::Value => Val::Num(data.value),
                Arg::Label(n) => Val::Str(data.labels.get(n).unwrap_or_default().to_owned()),
                Arg::ExternalLabel(n) => {
                    Val::Str(data.external_labels.get(n).unwrap_or_default().to_owned())
                }
                Arg::Str(s) => Val::Str(s.clone()),
                Arg::Num(n) => Val::Num(*n),
            })
            .collect();
        args.extend(piped.take());
        piped = Some(match cmd.func {
            None => args.pop().ok_or("empty command")?,
            Some(func) => call(func, &args)?,
        });
    }
    piped.ok_or_else(|| "empty pipeline".into())
}

fn call(func: Func, args: &[Val]) -> Result<Val, Invalid> {
    let one = || match args {
        [v] => Ok(v),
        _ => Err(Invalid::from(format!(
            "{func:?} takes one argument, got {}",
            args.len()
        ))),
    };
    Ok(Val::Str(match func {
        Func::Humanize => humanize(one()?.num()?),
        Func::Humanize1024 => humanize1024(one()?.num()?),
        Func::HumanizePercentage => format!("{}%", go_g(one()?.num()? * 100.0, 4)),
        Func::HumanizeDuration => humanize_duration(one()?.num()?),
        Func::ToUpper => one()?.text().to_uppercase(),
        Func::ToLower => one()?.text().to_lowercase(),
        Func::Printf => {
            let (fmt, rest) = args.split_first().ok_or("printf needs a format")?;
            printf(&fmt.text(), rest)?
        }
    }))
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(v, 'g', -1, 64)`).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    format!("{v}")
}

/// Go's `%.{prec}g`: `prec` significant digits, trailing zeros removed, exponent form when the
/// exponent is < -4 or >= prec.
pub fn go_g(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return go_float(v);
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_owned()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    if v.abs() >= 1.0 {
        let mut v = v;
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", go_g(v, 4));
    }
    let (v, prefix) = scale_small(v);
    format!("{}{prefix}", go_g(v, 4))
}

/// Scales |v| < 1 up by thousands: (value, SI prefix), as Go's humanize does.
fn scale_small(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    let (v, prefix) = scale_small(v);
    format!("{}{prefix}s", go_g(v, 4))
}

/// `printf` with the verbs `%s %v %d %f %.Nf %g %%`.
fn printf(fmt: &str, args: &[Val]) -> Result<String, Invalid> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            precision = Some(
                digits
                    .parse::<usize>()
                    .map_err(|_| Invalid::from("bad precision in printf"))?,
            );
        }
        let verb = chars.next().ok_or("printf format ends with %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args.next().ok_or("printf: missing argument")?;
        match verb {
            's' | 'v' => out.push_str(&arg.text()),
            'd' => out.push_str(&format!("{}", arg.num()? as i64)),
            'f' => out.push_str(&format!("{:.*}", precision.unwrap_or(6), arg.num()?)),
            'g' => out.push_str(&go_g(arg.num()?, precision.unwrap_or(6))),
            other => return Err(format!("printf verb %{other} is not supported").into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str, value: f64) -> String {
        let labels = Labels::from_pairs(&[("job", "api"), ("instance", "h:1")]);
        let ext = Labels::from_pairs(&[("cluster", "eu")]);
        Template::parse(t).unwrap().expand(&Data {
            labels: &labels,
            external_labels: &ext,
            value,
        })
    }

    #[test]
    fn labels_values_and_pipelines() {
        assert_eq!(
            expand("{{ $labels.job }} at {{ $labels.instance }}", 0.0),
            "api at h:1"
        );
        assert_eq!(
            expand("{{ $externalLabels.cluster }}/{{ $labels.missing }}.", 0.0),
            "eu/."
        );
        assert_eq!(
            expand("{{ $value | humanizePercentage }} failed", 0.1234),
            "12.34% failed"
        );
        assert_eq!(expand("{{ humanizePercentage $value }}", 0.0625), "6.25%");
        assert_eq!(
            expand("p95 {{ $value | humanizeDuration }}", 3.75),
            "p95 3.75s"
        );
        assert_eq!(expand("{{ .Value }} {{ .Labels.job }}", 2.5), "2.5 api");
        assert_eq!(expand(r#"{{ printf "%.2f" $value }}"#, 1.0 / 3.0), "0.33");
        assert_eq!(expand("{{ $labels.job | toUpper }}", 0.0), "API");
        assert_eq!(expand("a {{- $labels.job -}} b", 0.0), "aapib");
    }

    #[test]
    fn go_number_formatting() {
        assert_eq!(go_float(0.05), "0.05");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_g(123456.0, 4), "1.235e+05");
        assert_eq!(go_g(0.00001234, 4), "1.234e-05");
        assert_eq!(go_g(12.5, 4), "12.5");
        assert_eq!(humanize_duration(0.0123), "12.3ms");
        assert_eq!(humanize_duration(125.0), "2m 5s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize1024(2048.0), "2ki");
    }

    #[test]
    fn bad_templates_are_refused_at_parse() {
        for bad in [
            "{{ $labels.job",
            "{{ }}",
            "{{ nosuchfunc $value }}",
            "{{ $value | nosuch }}",
            "{{ \"open }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        // Evaluation errors are rendered, not raised.
        assert!(
            expand("{{ $labels.job | humanize }}", 0.0).starts_with("<error expanding template")
        );
    }
}
