//! `dlm serve`: an OpenAI-style HTTP server over one loaded [`Engine`].
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (both with `stream: true`
//! for server-sent events), `GET /v1/models`, `GET /health`. One engine is shared by every
//! request (it is read-only); generations run on worker threads behind a bounded queue, each
//! with its own cancel flag, so a client that hangs up stops its generation at the next step.
//!
//! The runtime and the C library carry no HTTP stack: this crate is linked only into the `dlm`
//! binary.
#![forbid(unsafe_code)]

mod error;
mod http;
mod openai;
mod request;
mod worker;

pub use error::{ApiError, ServeError};
pub use request::{Endpoint, GenRequest, Limits, parse, steps_for};

use dlm_runtime::Engine;
use dlm_runtime::decode::DecodeParams;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// How the server listens and what it accepts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host or address to bind (`127.0.0.1` by default).
    pub host: String,
    /// Port (0 picks a free one; the address is printed).
    pub port: u16,
    /// When set, every endpoint but `/health` needs `Authorization: Bearer KEY`. Required to
    /// bind beyond loopback.
    pub api_key: Option<String>,
    /// The name `/v1/models` lists and responses carry (any requested name is accepted).
    pub model_name: String,
    /// Decoding defaults of every request (the model file's, with the command line's flags).
    pub defaults: DecodeParams,
    /// The seed of requests that give none; `None` draws a random one per request.
    pub seed: Option<u64>,
    /// Prompt and generation bounds.
    pub limits: Limits,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Requests that may wait for a worker; more get 429.
    pub max_queue: usize,
    /// Generations run side by side (each one already uses every core through rayon).
    pub workers: usize,
    /// A request still unfinished this long after it arrived fails with 504.
    pub timeout: Duration,
}

impl Config {
    /// Defaults for `engine`: 127.0.0.1:8080, no key, the file's decoding defaults, prompts up
    /// to the model's context, at most 1024 generated tokens (or the context), a 1 MiB body,
    /// 16 waiting requests, one worker, a 10-minute timeout.
    pub fn new(engine: &Engine, model_name: impl Into<String>) -> Self {
        let seq_len = engine.model().config().seq_len;
        Config {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            model_name: model_name.into(),
            defaults: engine.defaults().clone(),
            seed: None,
            limits: Limits {
                max_prompt_tokens: seq_len.saturating_sub(1).max(1),
                max_gen_length: seq_len.min(1024),
            },
            max_body_bytes: 1 << 20,
            max_queue: 16,
            workers: 1,
            timeout: Duration::from_secs(600),
        }
    }
}

/// What every request handler shares.
struct State {
    engine: Arc<Engine>,
    config: Config,
    pool: worker::Pool,
    next_id: AtomicU64,
}

/// A seed from the process's random hash keys and the clock (no random-number crate needed:
/// it only has to differ between requests).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, ServeError> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ServeError::BadAddress(format!("{host}:{port}: {e}")))?
        .next()
        .ok_or_else(|| ServeError::BadAddress(format!("{host}:{port} resolves to nothing")))
}

/// Bind and serve until the process ends. Prints `dlm serve: listening on http://ADDR` on
/// stderr once it accepts connections.
pub fn serve(engine: Engine, config: Config) -> Result<(), ServeError> {
    if config.workers == 0 || config.max_queue == 0 {
        return Err(ServeError::BadConfig(
            "workers and the queue length must be at least 1".into(),
        ));
    }
    let addr = resolve(&config.host, config.port)?;
    if !addr.ip().is_loopback() && config.api_key.is_none() {
        return Err(ServeError::OpenWithoutKey(addr.to_string()));
    }
    let engine = Arc::new(engine);
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ServeError::Io { what, source }
    };
    // One I/O thread is plenty: requests only parse JSON and move bytes; the work is on the
    // worker threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(io("start the I/O runtime"))?;
    let pool = worker::Pool::start(engine.clone(), config.workers, config.max_queue);
    let state = Arc::new(State {
        engine,
        config,
        pool,
        next_id: AtomicU64::new(1),
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(&format!("bind {addr}")))?;
        let local = listener.local_addr().map_err(io("read the bound address"))?;
        eprintln!(
            "dlm serve: listening on http://{local} (model {}; POST /v1/chat/completions, /v1/completions)",
            state.config.model_name
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait and go on serving.
                    eprintln!("dlm serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let st = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| http::handle(st.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
