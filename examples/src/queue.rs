//! The demo's job queue: a Redis list. demo-service enqueues a job per signup; the `worker`
//! binary takes them off and runs each with `obs.job(..)`. What obs needs from a queue is only
//! that a job carries string headers: the producer's trace goes into them
//! ([`obs::trace::inject`]) and comes out on the worker ([`obs::job::Job::parent`]).
//!
//! Retrying a failed job is the application's business; obs counts each attempt.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// The list the jobs wait in.
pub const QUEUE_KEY: &str = "obs-demo:jobs";
/// The `messaging.system` of these jobs.
pub const SYSTEM: &str = "redis";
/// Redis' replies are awaited at most this long (a blocking pop asks for less).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One job as it travels through Redis.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The job's id (`messaging.message.id`, the log lines' `job_id`).
    pub id: String,
    /// What to run (`messaging.destination.name`, the log lines' `job_name`).
    pub name: String,
    /// `traceparent`, `tracestate`, `baggage` of the request that enqueued it.
    pub headers: HashMap<String, String>,
    pub payload: serde_json::Value,
}

impl Envelope {
    /// Job `name` with `payload`, a new id and the current span's trace in its headers.
    pub fn new(name: &str, payload: serde_json::Value) -> Self {
        let mut headers = HashMap::new();
        obs::trace::inject(&mut headers);
        Self {
            id: obs::RequestId::generate().as_str().to_owned(),
            name: name.to_owned(),
            headers,
            payload,
        }
    }
}

/// A connection to the queue.
#[derive(Clone)]
pub struct Queue {
    connection: redis::aio::MultiplexedConnection,
}

impl Queue {
    /// Connects to `url` (`redis://127.0.0.1:6379`), within a second.
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = redis::Client::open(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Self { connection })
    }

    /// Enqueues job `name` inside a PRODUCER span `send {name}`, whose context the job's
    /// headers carry; returns the job's id.
    pub async fn enqueue(
        &self,
        name: &str,
        payload: serde_json::Value,
    ) -> redis::RedisResult<String> {
        let span = tracing::info_span!(
            "send",
            otel.name = format_args!("send {name}"),
            otel.kind = "producer",
            messaging.system = SYSTEM,
            messaging.operation.name = "send",
            messaging.operation.r#type = "send",
            messaging.destination.name = name,
        );
        let envelope = span.in_scope(|| Envelope::new(name, payload));
        let json = serde_json::to_string(&envelope).expect("an envelope serializes");
        let mut connection = self.connection.clone();
        let pushed = connection.lpush::<_, _, usize>(QUEUE_KEY, json);
        tracing::Instrument::instrument(pushed, span).await?;
        Ok(envelope.id)
    }

    /// The oldest job, waiting at most `wait` (whole seconds, at least one) for one to come.
    /// A job Redis holds that is not an envelope is logged and dropped.
    pub async fn pop(&self, wait: Duration) -> redis::RedisResult<Option<Envelope>> {
        let mut connection = self.connection.clone();
        let popped: Option<[String; 2]> = connection
            .brpop(QUEUE_KEY, wait.as_secs_f64().clamp(1.0, 4.0))
            .await?;
        Ok(
            popped.and_then(|[_, json]| match serde_json::from_str(&json) {
                Ok(envelope) => Some(envelope),
                Err(e) => {
                    tracing::error!(error = %e, "a job in the queue is not an envelope: dropped");
                    None
                }
            }),
        )
    }

    /// Jobs waiting.
    pub async fn len(&self) -> redis::RedisResult<usize> {
        let mut connection = self.connection.clone();
        connection.llen(QUEUE_KEY).await
    }
}
