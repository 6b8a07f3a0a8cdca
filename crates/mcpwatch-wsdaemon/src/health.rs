//! The health endpoint probe: one GET on a fresh connection, the status, the time it took,
//! and the JSON body for the mapping.

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use tokio::time::Instant;

use crate::Access;
use crate::http::{HttpConnection, read_body, request};
use crate::net::{Endpoint, Failure, Reason, connect, secure};

/// A health body larger than this is no health answer.
const BODY_LIMIT: usize = 1 << 20;

/// What one probe of the health endpoint found.
#[derive(Debug)]
pub(crate) struct HealthReport {
    /// Seconds from the start of the connection to the end of the body (or the failure).
    pub(crate) duration: f64,
    /// The HTTP status, when the server answered.
    pub(crate) status: Option<u16>,
    /// The body, when it is a JSON object (even with an error status: a daemon that
    /// answers 503 with `{"status":"unhealthy"}` says why it is down).
    pub(crate) body: Option<Value>,
    /// Why the probe failed.
    pub(crate) failure: Option<Failure>,
}

/// Probes `endpoint` by `deadline`.
pub(crate) async fn probe(endpoint: &Endpoint, access: &Access, deadline: Instant) -> HealthReport {
    let start = Instant::now();
    let mut report = HealthReport {
        duration: 0.0,
        status: None,
        body: None,
        failure: None,
    };
    if let Err(failure) = exchange(endpoint, access, deadline, &mut report).await {
        report.failure = Some(failure);
    }
    report.duration = start.elapsed().as_secs_f64();
    report
}

async fn exchange(
    endpoint: &Endpoint,
    access: &Access,
    deadline: Instant,
    report: &mut HealthReport,
) -> Result<(), Failure> {
    let tcp = connect(endpoint, deadline).await?;
    let stream = secure(tcp, endpoint, access.tls.as_ref(), deadline).await?;
    let mut connection = HttpConnection::open(stream).await?;
    let get = request(
        Method::GET,
        endpoint,
        access,
        &[("accept", "application/json")],
        Bytes::new(),
    )?;
    let response = connection.send(get, deadline, "health request").await?;
    let status = response.status();
    report.status = Some(status.as_u16());
    let body = read_body(response.into_body(), BODY_LIMIT, deadline, "health body").await?;
    let invalid = match serde_json::from_slice::<Value>(&body) {
        Ok(json @ Value::Object(_)) => {
            report.body = Some(json);
            None
        }
        Ok(_) => Some("health body is JSON but not an object".to_owned()),
        Err(e) => Some(format!("health body is not JSON: {e}")),
    };
    if !status.is_success() {
        return Err(Failure::new(
            Reason::HttpStatus,
            format_args!("health endpoint answered HTTP {}", status.as_u16()),
        ));
    }
    match invalid {
        None => Ok(()),
        Some(message) => Err(Failure::new(Reason::InvalidJson, message)),
    }
}
