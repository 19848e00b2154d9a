//! The generation workers: plain threads that take checked requests from a bounded queue and
//! run them on the one shared engine, sending text as it becomes final. Each job carries its
//! own cancel flag, deadline and channel, so concurrent requests share nothing but the engine
//! (which is read-only) and a request whose client left stops at the next step.

use crate::error::ApiError;
use crate::request::GenRequest;
use dlm_runtime::decode::StepEvent;
use dlm_runtime::final_text::{FinalText, final_ids};
use dlm_runtime::{Engine, RuntimeError};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// What a job reports to its request, in order: text deltas (and canvases when asked), then
/// exactly one `Done`.
#[derive(Debug)]
pub enum Event {
    /// Answer text that became final.
    Text(String),
    /// The canvas after a step (only with `stream_canvas`).
    Canvas(CanvasView),
    /// The end: counts, or why it failed.
    Done(Result<Summary, ApiError>),
}

/// The canvas after one step, for `event: canvas`.
#[derive(Debug, Clone)]
pub struct CanvasView {
    /// The step just run, from 0.
    pub step: usize,
    /// Steps planned.
    pub planned_steps: usize,
    /// Masks left in the generated region.
    pub masks_left: usize,
    /// Forward passes so far.
    pub nfe: usize,
    /// The generated region as text, a mask drawn as `░`.
    pub text: String,
}

/// The counts of a finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Answer tokens returned.
    pub completion_tokens: usize,
    /// `stop` (the model ended its answer) or `length` (cut at max_tokens or the canvas).
    pub finish_reason: &'static str,
    /// Forward passes.
    pub nfe: usize,
    /// Steps run.
    pub steps: usize,
    /// The canvas length generated.
    pub gen_length: usize,
    /// The seed used.
    pub seed: u64,
    /// Seconds spent generating (queue time excluded).
    pub seconds: f64,
}

/// Counters shown by `/health`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Jobs waiting in the queue.
    pub queued: AtomicUsize,
    /// Jobs generating now.
    pub active: AtomicUsize,
    /// Jobs finished with an answer.
    pub completed: AtomicUsize,
    /// Jobs stopped because their client went away.
    pub cancelled: AtomicUsize,
    /// Jobs stopped at their deadline.
    pub timed_out: AtomicUsize,
}

/// One request for a worker.
pub struct Job {
    /// The checked request.
    pub request: GenRequest,
    /// Where events go; a closed channel means the client went away.
    pub events: UnboundedSender<Event>,
    /// Set when the request's future or stream is dropped.
    pub cancel: Arc<AtomicBool>,
    /// The request fails with a timeout after this instant.
    pub deadline: Instant,
    /// The configured timeout, for the message.
    pub timeout: Duration,
}

impl Job {
    fn gone(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.events.is_closed()
    }
}

/// The queue in front of the workers.
pub struct Pool {
    queue: SyncSender<Job>,
    counters: Arc<Counters>,
    capacity: usize,
}

impl Pool {
    /// Start `workers` threads on `engine` behind a queue of `capacity` waiting jobs.
    pub fn start(engine: Arc<Engine>, workers: usize, capacity: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let counters = Arc::new(Counters::default());
        for i in 0..workers {
            let (engine, rx, counters) = (engine.clone(), rx.clone(), counters.clone());
            std::thread::Builder::new()
                .name(format!("dlm-worker-{i}"))
                .spawn(move || work(&engine, &rx, &counters))
                .expect("spawn a worker thread");
        }
        Pool {
            queue: tx,
            counters,
            capacity,
        }
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Queue a job, or a 429 when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => ApiError::new(
                        429,
                        "rate_limit_error",
                        "queue_full",
                        format!(
                            "{} requests are already waiting; try again later",
                            self.capacity
                        ),
                    ),
                    TrySendError::Disconnected(_) => ApiError::new(
                        503,
                        "server_error",
                        "no_workers",
                        "the generation workers have stopped".into(),
                    ),
                })
            }
        }
    }
}

fn work(engine: &Engine, rx: &Mutex<Receiver<Job>>, counters: &Counters) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = match rx.lock() {
            Ok(guard) => match guard.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        if job.gone() {
            counters.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counters.active.fetch_add(1, Ordering::Relaxed);
        // A panic in a request must not take a worker (and the server) down with it.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(engine, &job)))
            .unwrap_or_else(|_| {
                Outcome::Failed(ApiError::new(
                    500,
                    "server_error",
                    "internal_error",
                    "the generation panicked; this is a bug in dlm".into(),
                ))
            });
        counters.active.fetch_sub(1, Ordering::Relaxed);
        let done = match outcome {
            Outcome::Finished(s) => {
                counters.completed.fetch_add(1, Ordering::Relaxed);
                Ok(s)
            }
            Outcome::Cancelled => {
                counters.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Outcome::TimedOut => {
                counters.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::new(
                    504,
                    "timeout_error",
                    "timeout",
                    format!(
                        "the request took longer than the server's timeout of {} s",
                        job.timeout.as_secs_f64()
                    ),
                ))
            }
            Outcome::Failed(e) => Err(e),
        };
        let _ = job.events.send(Event::Done(done));
    }
}

enum Outcome {
    Finished(Summary),
    Cancelled,
    TimedOut,
    Failed(ApiError),
}

fn run(engine: &Engine, job: &Job) -> Outcome {
    let req = &job.request;
    if Instant::now() >= job.deadline {
        return Outcome::TimedOut;
    }
    let tokens = engine.decode_tokens();
    let tok = engine.tokenizer();
    let mut text = FinalText::new(req.prompt.len(), tokens, req.max_tokens);
    let mut timed_out = false;
    let start = Instant::now();
    let result = engine.generate(&req.prompt, &req.params, &mut |ev: &StepEvent<'_>| {
        if job.gone() {
            return false;
        }
        if Instant::now() >= job.deadline {
            timed_out = true;
            return false;
        }
        if req.stream {
            let delta = text.update(tok, ev.canvas);
            if !delta.is_empty() {
                let _ = job.events.send(Event::Text(delta));
            }
        }
        if req.stream_canvas {
            let _ = job.events.send(Event::Canvas(canvas_view(engine, ev)));
        }
        true
    });
    let seconds = start.elapsed().as_secs_f64();
    match result {
        Ok(out) => {
            let rest = text.finish(tok, &out.canvas);
            if !rest.is_empty() {
                let _ = job.events.send(Event::Text(rest));
            }
            let (ids, _) = final_ids(&out.canvas, out.prompt_len, tokens, req.max_tokens);
            let next = out.generated().get(ids.len());
            let stopped = next.is_some_and(|t| tokens.stop_ids.contains(t));
            Outcome::Finished(Summary {
                prompt_tokens: req.prompt.len(),
                completion_tokens: ids.len(),
                finish_reason: if stopped { "stop" } else { "length" },
                nfe: out.nfe,
                steps: out.steps,
                gen_length: req.params.gen_length,
                seed: req.params.seed,
                seconds,
            })
        }
        Err(RuntimeError::Cancelled) if timed_out => Outcome::TimedOut,
        Err(RuntimeError::Cancelled) => Outcome::Cancelled,
        Err(RuntimeError::InvalidRequest(m)) => Outcome::Failed(ApiError::invalid(m)),
        Err(e) => Outcome::Failed(ApiError::new(
            500,
            "server_error",
            "generation_failed",
            e.to_string(),
        )),
    }
}

fn canvas_view(engine: &Engine, ev: &StepEvent<'_>) -> CanvasView {
    let mask = engine.decode_tokens().mask_id;
    let tok = engine.tokenizer();
    let mut text = String::new();
    for &id in ev.canvas.get(ev.prompt_len..).unwrap_or(&[]) {
        if id == mask {
            text.push('░');
        } else if let Ok(s) = tok.decode(&[id], true) {
            text.push_str(&s);
        }
    }
    CanvasView {
        step: ev.step,
        planned_steps: ev.planned_steps,
        masks_left: ev.masks_left,
        nfe: ev.nfe,
        text,
    }
}
