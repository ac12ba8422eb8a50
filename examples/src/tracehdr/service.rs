//! `tracehdr serve`: the W3C trace-context test-suite service, a [`Handler`] for
//! [`crate::serve`]. A `POST` carries a JSON array of `{"url": ..., "arguments": [...]}`; each
//! loopback url is called with a child `traceparent` (a new parent id per call) and the
//! `tracestate`, with `arguments` as the JSON body; the answer is `200` once the calls are done.
//!
//! The calls of one request run concurrently, at most [`CallLimits::max_calls`] per request
//! (`413` past it) and [`CallLimits::concurrent`] across the process; each has
//! [`CallLimits::connect_timeout`] to connect, and all of a request's calls end by
//! [`CallLimits::deadline`] after it arrived (unfinished ones are abandoned and logged). A
//! callback that never answers therefore holds its request for at most the deadline, and delays
//! no other request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracectx::{Config, child_traceparent, new_traceparent};

use super::SplitMix64;
use super::callback::{LoopbackUrl, post};
use super::child::{incoming_w3c, traceparent_string};
use super::shown;
use crate::serve::{Handler, Reply, method_not_allowed, text};

/// Bounds on the service's outbound calls.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Calls one request may ask for (default 32); more is answered `413`.
    pub max_calls: usize,
    /// Calls in flight across the process (default 32); the others wait (within their deadline).
    pub concurrent: usize,
    /// Time to connect to a callback (default 2 s).
    pub connect_timeout: Duration,
    /// Time from a request's arrival by which all its calls have ended (default 5 s).
    pub deadline: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_calls: 32,
            concurrent: 32,
            connect_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
        }
    }
}

/// The test-suite service.
#[derive(Debug)]
pub struct TraceSuite {
    rng: Mutex<SplitMix64>,
    in_flight: Arc<Semaphore>,
    limits: CallLimits,
}

impl TraceSuite {
    /// The service with the random source `rng` (span and trace ids) and `limits`.
    pub fn new(rng: SplitMix64, limits: CallLimits) -> Self {
        Self {
            rng: Mutex::new(rng),
            in_flight: Arc::new(Semaphore::new(limits.concurrent)),
            limits,
        }
    }

    /// The calls a request body asks for, each with its headers and JSON body; or the status and
    /// message refusing it.
    fn plan(&self, head: &Parts, body: &[u8]) -> Result<Vec<Call>, (StatusCode, String)> {
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
        let Value::Array(items) = doc else {
            return Err((
                StatusCode::BAD_REQUEST,
                "body is not a JSON array".to_owned(),
            ));
        };
        if items.len() > self.limits.max_calls {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "at most {} calls per request, not {}",
                    self.limits.max_calls,
                    items.len()
                ),
            ));
        }
        let fields: Vec<(&[u8], &[u8])> = head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
            .collect();
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        // Continue the incoming trace, or restart one trace for the whole request.
        let (root, tracestate) = incoming_w3c(&fields, &Config::default())
            .unwrap_or_else(|| (new_traceparent(&mut *rng, true), None));
        let mut calls = Vec::with_capacity(items.len());
        for item in &items {
            let Some(url) = item.get("url").and_then(Value::as_str) else {
                eprintln!("tracehdr: skipping an item without a string url");
                continue;
            };
            let Some(target) = LoopbackUrl::parse(url) else {
                eprintln!(
                    "tracehdr: skipping {}: only http://127.0.0.1:PORT and http://localhost:PORT urls are called",
                    shown(url, 100)
                );
                continue;
            };
            let arguments = item.get("arguments").cloned().unwrap_or_else(|| json!([]));
            let mut headers = vec![(
                "traceparent",
                traceparent_string(&child_traceparent(&root, &mut *rng)),
            )];
            if let Some(state) = &tracestate {
                headers.push(("tracestate", state.clone()));
            }
            calls.push(Call {
                target,
                headers,
                body: arguments.to_string().into_bytes(),
            });
        }
        Ok(calls)
    }
}

/// One outbound call.
#[derive(Debug)]
struct Call {
    target: LoopbackUrl,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// A response that closes the connection (each request is answered on its own connection, as
/// the test suite and the old service did).
fn closing(
    mut response: Response<http_body_util::Full<Bytes>>,
) -> Response<http_body_util::Full<Bytes>> {
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

impl Handler for TraceSuite {
    fn wants_body(&self, head: &Parts) -> bool {
        head.method == Method::POST
    }

    fn respond(&self, head: Parts, body: Bytes) -> Reply {
        if head.method != Method::POST {
            return Box::pin(std::future::ready(closing(method_not_allowed("POST"))));
        }
        let calls = match self.plan(&head, &body) {
            Ok(calls) => calls,
            Err((status, message)) => {
                return Box::pin(std::future::ready(closing(text(
                    status,
                    "text/plain",
                    format!("{message}\n"),
                ))));
            }
        };
        let deadline = Instant::now() + self.limits.deadline;
        let connect_timeout = self.limits.connect_timeout;
        let in_flight = Arc::clone(&self.in_flight);
        Box::pin(async move {
            // Dropped (the client gone, shutdown): the calls still running are aborted with it.
            let mut running = JoinSet::new();
            for call in calls {
                let in_flight = Arc::clone(&in_flight);
                running.spawn(async move {
                    let outcome = call_by(deadline, &in_flight, &call, connect_timeout).await;
                    (call.target, outcome)
                });
            }
            while let Some(done) = running.join_next().await {
                let (target, why) = match done {
                    Ok((_, Ok(_))) => continue,
                    Ok((target, Err(Failed::Call(e)))) => (target, e.to_string()),
                    Ok((target, Err(Failed::NoSlot))) => (
                        target,
                        "not called: no call slot was free before the deadline".to_owned(),
                    ),
                    Ok((target, Err(Failed::Deadline))) => {
                        (target, "no answer within the deadline".to_owned())
                    }
                    Err(e) => {
                        eprintln!("tracehdr: a call failed: {e}");
                        continue;
                    }
                };
                eprintln!("tracehdr: POST {}: {why}", shown(&target.to_string(), 200));
            }
            closing(text(StatusCode::OK, "text/plain", ""))
        })
    }
}

/// Why a call did not complete.
#[derive(Debug)]
enum Failed {
    /// All call slots stayed taken until the deadline.
    NoSlot,
    /// The callback did not answer by the deadline.
    Deadline,
    /// The call failed (refused, reset, not HTTP).
    Call(std::io::Error),
}

/// Makes `call` once a slot among `in_flight` is free, all by `deadline`; the status line.
async fn call_by(
    deadline: Instant,
    in_flight: &Arc<Semaphore>,
    call: &Call,
    connect_timeout: Duration,
) -> Result<String, Failed> {
    let slot = tokio::time::timeout_at(deadline, Arc::clone(in_flight).acquire_owned())
        .await
        .map_err(|_| Failed::NoSlot)?
        .map_err(|_| Failed::NoSlot)?;
    let outcome = tokio::time::timeout_at(
        deadline,
        post(&call.target, &call.headers, &call.body, connect_timeout),
    )
    .await;
    drop(slot);
    outcome.map_err(|_| Failed::Deadline)?.map_err(Failed::Call)
}
