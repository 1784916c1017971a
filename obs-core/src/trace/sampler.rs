//! Head sampling, as the OpenTelemetry SDK specifies it (`OTEL_TRACES_SAMPLER`).

use std::fmt;

/// Which traces are sampled (exported, and flagged `01` downstream).
///
/// ```
/// use obs::trace::Sampler;
/// let s: Sampler = "parentbased_traceidratio".parse::<Sampler>().unwrap().with_arg(Some("0.25")).unwrap();
/// assert_eq!(s, Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.25))));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// A fraction of traces, decided from the trace id so every service agrees.
    TraceIdRatio(f64),
    /// The parent's decision when there is a parent, else the inner sampler's.
    ParentBased(Box<Sampler>),
}

impl Default for Sampler {
    /// `parentbased_always_on`, the OpenTelemetry default.
    fn default() -> Self {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    }
}

impl Sampler {
    /// The OpenTelemetry SDK's sampler for this choice (the SDK makes every decision).
    ///
    /// ```
    /// use obs::trace::Sampler;
    /// let sdk = Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.1))).to_sdk();
    /// assert!(format!("{sdk:?}").contains("ParentBased"));
    /// ```
    pub fn to_sdk(&self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler as Sdk;
        match self {
            Sampler::AlwaysOn => Sdk::AlwaysOn,
            Sampler::AlwaysOff => Sdk::AlwaysOff,
            Sampler::TraceIdRatio(r) => Sdk::TraceIdRatioBased(r.clamp(0.0, 1.0)),
            Sampler::ParentBased(root) => Sdk::ParentBased(Box::new(root.to_sdk())),
        }
    }

    /// Applies `OTEL_TRACES_SAMPLER_ARG` to a ratio sampler (default 1.0); other samplers take
    /// no argument and ignore it.
    ///
    /// ```
    /// use obs::trace::Sampler;
    /// assert_eq!(Sampler::TraceIdRatio(1.0).with_arg(Some("0.1")), Ok(Sampler::TraceIdRatio(0.1)));
    /// assert!(Sampler::TraceIdRatio(1.0).with_arg(Some("2")).is_err());
    /// ```
    pub fn with_arg(self, arg: Option<&str>) -> Result<Self, String> {
        match self {
            Sampler::TraceIdRatio(_) => match arg.map(str::trim) {
                None | Some("") => Ok(Sampler::TraceIdRatio(1.0)),
                Some(raw) => match raw.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(Sampler::TraceIdRatio(r)),
                    _ => Err(format!(
                        "invalid OTEL_TRACES_SAMPLER_ARG {raw:?}: expected a ratio in [0, 1]"
                    )),
                },
            },
            Sampler::ParentBased(root) => Ok(Sampler::ParentBased(Box::new(root.with_arg(arg)?))),
            other => Ok(other),
        }
    }
}

impl std::str::FromStr for Sampler {
    type Err = crate::error::ParseError;
    /// The `OTEL_TRACES_SAMPLER` names this SDK implements.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parent = |root| Sampler::ParentBased(Box::new(root));
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio(1.0),
            "parentbased_always_on" => parent(Sampler::AlwaysOn),
            "parentbased_always_off" => parent(Sampler::AlwaysOff),
            "parentbased_traceidratio" => parent(Sampler::TraceIdRatio(1.0)),
            _ => {
                return Err(crate::error::ParseError(
                    "expected always_on, always_off, traceidratio or parentbased_(always_on|always_off|traceidratio)",
                ))
            }
        })
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sampler::AlwaysOn => f.write_str("always_on"),
            Sampler::AlwaysOff => f.write_str("always_off"),
            Sampler::TraceIdRatio(r) => write!(f, "traceidratio({r})"),
            Sampler::ParentBased(root) => write!(f, "parentbased_{root}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert!("jaeger_remote".parse::<Sampler>().is_err());
        assert_eq!(" ALWAYS_OFF ".parse::<Sampler>(), Ok(Sampler::AlwaysOff));
        assert_eq!(Sampler::default().to_string(), "parentbased_always_on");
    }
}
