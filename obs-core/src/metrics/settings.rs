//! The metrics part of the configuration: the request histogram's buckets and its cap on label
//! sets (code only; no variable of the OpenTelemetry specification sets them).

use crate::env::Env;
use crate::semconv::DURATION_BUCKETS;

/// Default cap on distinct label sets per metric; beyond it routes fold into `_overflow`.
pub const DEFAULT_MAX_LABEL_SETS: usize = 10_000;

/// What code set.
#[derive(Clone, Default)]
pub(crate) struct MetricsConfig {
    pub buckets: Option<Vec<f64>>,
    pub max_label_sets: Option<usize>,
}

/// The effective metrics settings.
#[derive(Clone)]
pub(crate) struct MetricsSettings {
    pub buckets: Vec<f64>,
    pub max_label_sets: usize,
    /// Exemplars are kept only when spans are exported: an exemplar must open a trace.
    pub exemplars: bool,
}

impl MetricsSettings {
    /// Code's values, checked: bad buckets or a cap of 0 warn and give the default (or 1).
    pub fn resolve(code: &MetricsConfig, exemplars: bool, env: &mut Env<'_>) -> Self {
        let buckets = match &code.buckets {
            Some(b) if valid_buckets(b) => b.clone(),
            Some(b) => {
                env.warn(format!(
                    "invalid histogram buckets {b:?}: expected finite, strictly ascending values; using the default"
                ));
                DURATION_BUCKETS.to_vec()
            }
            None => DURATION_BUCKETS.to_vec(),
        };
        let max_label_sets = match code.max_label_sets {
            Some(0) => {
                env.warn("invalid max_label_sets 0: expected at least 1; using 1".to_owned());
                1
            }
            Some(max) => max,
            None => DEFAULT_MAX_LABEL_SETS,
        };
        Self {
            buckets,
            max_label_sets,
            exemplars,
        }
    }
}

fn valid_buckets(b: &[f64]) -> bool {
    !b.is_empty() && b.iter().all(|v| v.is_finite()) && b.windows(2).all(|w| w[0] < w[1])
}
