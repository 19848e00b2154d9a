//! The HTTP side: routing, the API key, body limits, and the two kinds of response body (one
//! JSON document, or server-sent events fed by a worker's channel).

use crate::error::ApiError;
use crate::openai::{self, Meta};
use crate::request::{self, Endpoint};
use crate::worker::{Event, Job};
use crate::{Config, State};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// How long a client may take to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A response body: a whole document, or a stream of server-sent events.
pub enum Body {
    /// The bytes, taken when sent.
    Full(Option<Bytes>),
    /// Events as the worker produces them.
    Sse(Box<Sse>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Sse(s) => s.poll(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Sse(_) => SizeHint::default(),
        }
    }
}

/// Sets the job's cancel flag when dropped: the request's future or stream went away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A stream of server-sent events in OpenAI's format, ending with `data: [DONE]`.
pub struct Sse {
    events: UnboundedReceiver<Event>,
    meta: Meta,
    include_usage: bool,
    pending: VecDeque<Bytes>,
    finished: bool,
    _cancel: CancelOnDrop,
}

fn data(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

const DONE: &[u8] = b"data: [DONE]\n\n";

impl Sse {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Poll::Ready(Some(b));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            match self.events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.finished = true;
                    self.pending.push_back(Bytes::from_static(DONE));
                }
                Poll::Ready(Some(ev)) => self.push(ev),
            }
        }
    }

    fn push(&mut self, ev: Event) {
        match ev {
            Event::Text(t) => self
                .pending
                .push_back(data(&openai::chunk(&self.meta, &t, false))),
            Event::Canvas(c) => self.pending.push_back(Bytes::from(format!(
                "event: canvas\ndata: {}\n\n",
                openai::canvas(&self.meta, &c)
            ))),
            Event::Done(Ok(s)) => {
                self.pending
                    .push_back(data(&openai::final_chunk(&self.meta, &s)));
                if self.include_usage {
                    self.pending
                        .push_back(data(&openai::usage_chunk(&self.meta, &s)));
                }
                self.pending.push_back(Bytes::from_static(DONE));
                self.finished = true;
            }
            Event::Done(Err(e)) => {
                self.pending.push_back(data(&e.to_json()));
                self.pending.push_back(Bytes::from_static(DONE));
                self.finished = true;
            }
        }
    }
}

fn json(status: u16, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(Bytes::from(v.to_string()))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &ApiError) -> Response<Body> {
    let mut r = json(e.status, &e.to_json());
    if e.status == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if e.status == 401 {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Answer one request.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(match route(&state, req).await {
        Ok(r) => r,
        Err(e) => error(&e),
    })
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    if path == "/health" && method == Method::GET {
        let c = state.pool.counters();
        let n = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed);
        return Ok(json(
            200,
            &serde_json::json!({
                "status": "ok",
                "model": state.config.model_name,
                "queued": n(&c.queued),
                "active": n(&c.active),
                "completed": n(&c.completed),
                "cancelled": n(&c.cancelled),
                "timed_out": n(&c.timed_out),
            }),
        ));
    }
    authorize(&state.config, &req)?;
    let endpoint = match path.as_str() {
        "/v1/models" if method == Method::GET => {
            return Ok(json(
                200,
                &serde_json::json!({
                    "object": "list",
                    "data": [{
                        "id": state.config.model_name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "dlm",
                    }],
                }),
            ));
        }
        "/v1/chat/completions" if method == Method::POST => Endpoint::Chat,
        "/v1/completions" if method == Method::POST => Endpoint::Completion,
        "/health" | "/v1/models" | "/v1/chat/completions" | "/v1/completions" => {
            return Err(ApiError::new(
                405,
                "invalid_request_error",
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            ));
        }
        _ => {
            return Err(ApiError::new(
                404,
                "invalid_request_error",
                "not_found",
                format!(
                    "no endpoint {path}; this server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models and GET /health"
                ),
            ));
        }
    };
    generate(state, req, endpoint).await
}

fn authorize(config: &Config, req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(key) = &config.api_key else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare every byte so the time taken says nothing about how much of the key matched.
    let same = given.len() == key.len()
        && given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "authentication_error",
            "invalid_api_key",
            "missing or wrong API key: send Authorization: Bearer KEY".into(),
        ))
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        413,
        "invalid_request_error",
        "request_too_large",
        format!("the request body is larger than this server's limit of {max} bytes"),
    )
}

async fn read_body(req: Request<Incoming>, max: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let mut body = req.into_body();
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await
        {
            let frame = frame
                .map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?;
            if let Ok(d) = frame.into_data() {
                if out.len() + d.len() > max {
                    return Err(too_large(max));
                }
                out.extend_from_slice(&d);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| {
            ApiError::new(
                408,
                "invalid_request_error",
                "request_timeout",
                format!(
                    "the request body took longer than {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })?
}

async fn generate(
    state: &Arc<State>,
    req: Request<Incoming>,
    endpoint: Endpoint,
) -> Result<Response<Body>, ApiError> {
    let received = Instant::now();
    let body = read_body(req, state.config.max_body_bytes).await?;
    let seed = state.config.seed.unwrap_or_else(crate::random_seed);
    // Tokenizing a long prompt is CPU work: off the I/O thread.
    let st = state.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        request::parse(
            endpoint,
            &body,
            &st.engine,
            &st.config.defaults,
            &st.config.limits,
            seed,
        )
    })
    .await
    .map_err(|_| {
        ApiError::new(
            500,
            "server_error",
            "internal_error",
            "parsing the request panicked".into(),
        )
    })??;

    let (stream, include_usage) = (parsed.stream, parsed.include_usage);
    let (tx, mut rx) = unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop(cancel.clone());
    state.pool.submit(Job {
        request: parsed,
        events: tx,
        cancel,
        deadline: received + state.config.timeout,
        timeout: state.config.timeout,
    })?;
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let meta = Meta {
        id: match endpoint {
            Endpoint::Chat => format!("chatcmpl-{n}"),
            Endpoint::Completion => format!("cmpl-{n}"),
        },
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: state.config.model_name.clone(),
        endpoint,
    };

    if stream {
        let mut pending = VecDeque::new();
        if endpoint == Endpoint::Chat {
            // OpenAI's first chunk names the role before any text.
            pending.push_back(data(&openai::chunk(&meta, "", true)));
        }
        let mut r = Response::new(Body::Sse(Box::new(Sse {
            events: rx,
            meta,
            include_usage,
            pending,
            finished: false,
            _cancel: guard,
        })));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(r);
    }

    // Held across the wait: if the client hangs up, hyper drops this future and the guard.
    let _guard = guard;
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Canvas(_)) => {}
            Some(Event::Done(Ok(s))) => return Ok(json(200, &openai::response(&meta, &text, &s))),
            Some(Event::Done(Err(e))) => return Err(e),
            None => {
                return Err(ApiError::new(
                    500,
                    "server_error",
                    "internal_error",
                    "the worker stopped without an answer".into(),
                ));
            }
        }
    }
}
