//! The metric and label names obs emits: the one place they are defined.
//!
//! The collector, the dashboards in `dashboards/` and the rules in `alerts/` use exactly these
//! names (a test checks it). They follow the OpenTelemetry HTTP semantic conventions, rendered for
//! Prometheus (dots become underscores, units become suffixes).
//!
//! ```
//! use obs::metrics::names;
//! assert_eq!(names::HTTP_SERVER_REQUEST_DURATION, "http_server_request_duration_seconds");
//! assert!(names::DURATION_BUCKETS.contains(&2.0));
//! ```

/// Histogram of server request durations in seconds (`_bucket`, `_sum`, `_count`).
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Gauge of requests in flight, by method and scheme.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Gauge (always 1) carrying the service's resource attributes as labels.
pub const TARGET_INFO: &str = "target_info";
/// Gauge: when the process started (obs' start), seconds since the epoch, the Prometheus
/// client convention; a new value is a restart.
pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";
/// Gauge (always 1) carrying the obs version.
pub const OBS_BUILD_INFO: &str = "obs_build_info";
/// Counter of log lines dropped because the log queue was full.
pub const OBS_LOG_LINES_DROPPED_TOTAL: &str = "obs_log_lines_dropped_total";
/// Counter of spans dropped because the export queue was full or the exporter failed.
pub const OBS_SPANS_DROPPED_TOTAL: &str = "obs_spans_dropped_total";
/// Counter of requests and jobs recorded under `_overflow` (`http_route`,
/// `messaging_destination_name`) because the label-set cap was hit.
pub const OBS_METRICS_OVERFLOW_TOTAL: &str = "obs_metrics_overflow_total";
/// Histogram of job durations in seconds (`obs.job(..)`; semconv `messaging.process.duration`).
pub const MESSAGING_PROCESS_DURATION: &str = "messaging_process_duration_seconds";
/// Histogram of database operation durations in seconds, from sqlx's query events (semconv
/// `db.client.operation.duration`).
pub const DB_CLIENT_OPERATION_DURATION: &str = "db_client_operation_duration_seconds";

/// Every metric name above, for contract checks.
pub const ALL_METRICS: &[&str] = &[
    HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_ACTIVE_REQUESTS,
    TARGET_INFO,
    PROCESS_START_TIME_SECONDS,
    OBS_BUILD_INFO,
    OBS_LOG_LINES_DROPPED_TOTAL,
    OBS_SPANS_DROPPED_TOTAL,
    OBS_METRICS_OVERFLOW_TOTAL,
    MESSAGING_PROCESS_DURATION,
    DB_CLIENT_OPERATION_DURATION,
];

/// Label: the HTTP method, one of [`KNOWN_METHODS`] or [`METHOD_OTHER`].
pub const HTTP_REQUEST_METHOD: &str = "http_request_method";
/// Label: the matched route template (e.g. `/users/{id}`); absent when no route matched.
pub const HTTP_ROUTE: &str = "http_route";
/// Label: the response status code; absent when no response was sent.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http_response_status_code";
/// Label: set only on failures: the 5xx status code as text, or `panic`, `cancelled`, `_OTHER`.
pub const ERROR_TYPE: &str = "error_type";
/// Label: `http` or `https`.
pub const URL_SCHEME: &str = "url_scheme";
/// Label of `target_info`: the service name.
pub const SERVICE_NAME: &str = "service_name";
/// Label of `target_info`: the service version.
pub const SERVICE_VERSION: &str = "service_version";
/// Label of `target_info`: the commit the build was made from (`vcs.ref.head.revision`).
pub const VCS_REF_HEAD_REVISION: &str = "vcs_ref_head_revision";
/// Label of `target_info`: the deployment environment (`deployment.environment.name`).
pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment_environment_name";
/// Label of `obs_build_info`: the obs version.
pub const VERSION: &str = "version";
/// Label of jobs: the messaging system (`redis`, `kafka`, ...; `obs` unless the job says).
pub const MESSAGING_SYSTEM: &str = "messaging_system";
/// Label of jobs: the job's name (the queue or task type), folded into `_overflow` past the cap.
pub const MESSAGING_DESTINATION_NAME: &str = "messaging_destination_name";
/// Label of jobs: the operation, always `process`.
pub const MESSAGING_OPERATION_NAME: &str = "messaging_operation_name";
/// Label of database calls: the database (`postgresql`, `sqlite`, ...; `other_sql` unless
/// `Config::db_system` says).
pub const DB_SYSTEM_NAME: &str = "db_system_name";
/// Label of database calls: the statement's operation (`SELECT`, `INSERT`, ...; `_OTHER`).
pub const DB_OPERATION_NAME: &str = "db_operation_name";
/// Label of database calls: the table the statement names, when it can be read; absent else.
pub const DB_COLLECTION_NAME: &str = "db_collection_name";

/// Every label name obs emits (besides resource attributes on `target_info`).
pub const ALL_LABELS: &[&str] = &[
    HTTP_REQUEST_METHOD,
    HTTP_ROUTE,
    HTTP_RESPONSE_STATUS_CODE,
    ERROR_TYPE,
    URL_SCHEME,
    SERVICE_NAME,
    SERVICE_VERSION,
    VCS_REF_HEAD_REVISION,
    DEPLOYMENT_ENVIRONMENT_NAME,
    VERSION,
    MESSAGING_SYSTEM,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_OPERATION_NAME,
    DB_SYSTEM_NAME,
    DB_OPERATION_NAME,
    DB_COLLECTION_NAME,
];

/// The methods kept as they are; any other becomes [`METHOD_OTHER`].
pub const KNOWN_METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
];
/// The method label of any method not in [`KNOWN_METHODS`].
pub const METHOD_OTHER: &str = "_OTHER";
/// The route label of requests folded by the label-set cap.
pub const ROUTE_OVERFLOW: &str = "_overflow";

/// `error_type` of a request whose handler panicked (answered with a 500).
pub const ERROR_PANIC: &str = "panic";
/// `error_type` of a request the client abandoned before a response was sent.
pub const ERROR_CANCELLED: &str = "cancelled";
/// `error_type` of a request whose inner service returned an error instead of a response.
pub const ERROR_OTHER: &str = "_OTHER";

/// Job-duration buckets in seconds: the request buckets, then up to 10 minutes (an email or a
/// report takes seconds to minutes, not milliseconds).
pub const JOB_DURATION_BUCKETS: [f64; 19] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0, 7.5, 10.0, 30.0,
    60.0, 300.0, 600.0,
];

/// Database-call buckets in seconds: the OpenTelemetry advice for `db.client.operation.duration`.
pub const DB_DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// Request-duration buckets in seconds: the OpenTelemetry set plus `2`, so that the default
/// "p95 above 2 s" alert is decided on a bucket boundary instead of interpolated.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0, 7.5, 10.0,
];
