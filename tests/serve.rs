//! `dlm serve` driven over real HTTP on 127.0.0.1 with a real client (ureq): the endpoints,
//! streaming, errors, limits, the API key, cancellation on disconnect, and concurrent requests.
//! Each test starts its own server on a free port with the demo model and stops it at the end.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `dlm serve`; killed (and its cache folder removed) when dropped.
struct Server {
    child: Child,
    base: String,
    cache: common::TempDir,
}

impl Server {
    fn start(tag: &str, args: &[&str]) -> Server {
        let cache = common::TempDir::new(&format!("serve-{tag}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_dlm"))
            .args(["serve", "--port", "0"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DLM_CACHE", cache.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dlm serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = String::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest.split(' ').next().unwrap().to_string();
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("dlm serve did not start:\n{seen}");
                }
            }
        };
        Server { child, base, cache }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.cache;
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// POST JSON, returning the status and the parsed body.
fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    post_raw(s, path, &body.to_string(), None)
}

fn post_raw(s: &Server, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = agent(Duration::from_secs(120))
        .post(s.url(path))
        .header("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut r = req.send(body).expect("POST");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

fn get(s: &Server, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = agent(Duration::from_secs(30)).get(s.url(path));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut r = req.call().expect("GET");
    let status = r.status().as_u16();
    let v = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    (status, v)
}

/// The events of a stream: (event name or "", data).
fn stream(s: &Server, path: &str, body: &Value) -> Vec<(String, String)> {
    let r = agent(Duration::from_secs(120))
        .post(s.url(path))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("POST stream");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers().get("content-type").unwrap().to_str().unwrap(),
        "text/event-stream"
    );
    let mut events = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(r.into_body().into_reader()).lines() {
        let line = line.expect("read stream");
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            events.push((std::mem::take(&mut name), d.to_string()));
        }
    }
    events
}

fn sort_request() -> Value {
    json!({"model": "anything", "messages": [{"role": "user", "content": "Sort: 42 7 93 15"}]})
}

/// A request that runs for a long time unless stopped: 256 steps, no early stop.
fn long_request() -> Value {
    json!({"prompt": "Sort: 3 1 2", "max_tokens": 256, "block_length": 256, "steps": 256,
           "stop_early": false})
}

fn health(s: &Server) -> Value {
    get(s, "/health", None).1
}

/// Wait until `/health` satisfies `ok`, at most `secs` seconds.
fn wait_health(s: &Server, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let h = health(s);
        if ok(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "health never got there: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn endpoints_answer_in_openai_format() {
    let s = Server::start("endpoints", &[]);
    let h = health(&s);
    assert_eq!(h["status"], "ok");
    let (st, models) = get(&s, "/v1/models", None);
    assert_eq!(st, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "demo");

    let (st, v) = post(&s, "/v1/chat/completions", &sort_request());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "7 15 42 93");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(u["completion_tokens"].as_u64().unwrap() >= 4);
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );

    // A raw completion cut at max_tokens: never more tokens than asked, "length" when cut.
    let (st, v) = post(
        &s,
        "/v1/completions",
        &json!({"prompt": "Sort: 9 8 7 6 5 4 3 2 1", "max_tokens": 3, "stop_early": false}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"].is_string());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
    assert_eq!(v["dlm"]["gen_length"], 3);

    // max_tokens that is not a multiple of the block length: the canvas is rounded up to
    // whole blocks, the answer cut back.
    let mut r = sort_request();
    r["max_tokens"] = json!(20);
    r["block_length"] = json!(8);
    let (st, v) = post(&s, "/v1/chat/completions", &r);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["dlm"]["gen_length"], 24);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 20);

    // The same seed repeats a sampled answer.
    let mut r = sort_request();
    r["temperature"] = json!(1.0);
    r["seed"] = json!(1234);
    let a = post(&s, "/v1/chat/completions", &r).1;
    let b = post(&s, "/v1/chat/completions", &r).1;
    assert_eq!(a["dlm"]["seed"], 1234);
    assert_eq!(a["choices"], b["choices"]);
}

#[test]
fn streaming_sends_final_blocks_then_done() {
    let s = Server::start("stream", &[]);
    let mut r = sort_request();
    r["max_tokens"] = json!(32);
    r["block_length"] = json!(8);
    r["seed"] = json!(7);
    let whole = post(&s, "/v1/chat/completions", &r).1;
    let want = whole["choices"][0]["message"]["content"].as_str().unwrap();

    r["stream"] = json!(true);
    r["stream_options"] = json!({"include_usage": true});
    let events = stream(&s, "/v1/chat/completions", &r);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert!(
        events.iter().all(|(name, _)| name.is_empty()),
        "no canvas events unasked"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    let mut pieces = 0;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        if let Some(t) = c["choices"][0]["delta"]["content"].as_str()
            && !t.is_empty()
        {
            text.push_str(t);
            pieces += 1;
        }
    }
    assert_eq!(text, want, "the stream's text is the whole answer's");
    assert!(pieces >= 2, "the answer came in one piece: {chunks:?}");
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"], whole["usage"]);

    // The canvas per step, only when asked, as its own event type; masks go down.
    r["stream_canvas"] = json!(true);
    r["stop_early"] = json!(false);
    let events = stream(&s, "/v1/chat/completions", &r);
    let canvases: Vec<Value> = events
        .iter()
        .filter(|(n, _)| n == "canvas")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(canvases.len(), 32, "one canvas per step");
    assert!(canvases[0]["canvas"].as_str().unwrap().contains('░'));
    assert_eq!(canvases[31]["masks_left"], 0);
    for w in canvases.windows(2) {
        assert!(w[1]["masks_left"].as_u64() < w[0]["masks_left"].as_u64());
    }

    // Completions stream too.
    let events = stream(
        &s,
        "/v1/completions",
        &json!({"prompt": "Sort: 2 1", "max_tokens": 8, "stream": true}),
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(first["object"], "text_completion");
}

#[test]
fn bad_requests_get_clear_4xx_json_errors() {
    let s = Server::start(
        "errors",
        &[
            "--max-prompt",
            "40",
            "--max-body",
            "2000",
            "--max-gen-length",
            "64",
        ],
    );
    let chat = "/v1/chat/completions";
    let check = |(st, v): (u16, Value), status: u16, needle: &str| {
        assert_eq!(st, status, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        v
    };
    check(post_raw(&s, chat, "{not json", None), 400, "not valid JSON");
    check(post_raw(&s, chat, "[1, 2]", None), 400, "JSON object");
    check(post(&s, chat, &json!({"messages": []})), 400, "empty");
    check(post(&s, chat, &json!({})), 400, "messages");
    let mut r = sort_request();
    r["max_tokens"] = json!("many");
    let v = check(post(&s, chat, &r), 400, "max_tokens");
    assert_eq!(v["error"]["param"], "max_tokens");
    r["max_tokens"] = json!(1000);
    check(post(&s, chat, &r), 400, "limit of 64");
    r["max_tokens"] = json!(0);
    check(post(&s, chat, &r), 400, "at least 1");
    let mut r = sort_request();
    r["algorithm"] = json!("magic");
    check(post(&s, chat, &r), 400, "unknown algorithm");
    let mut r = sort_request();
    r["n"] = json!(2);
    check(post(&s, chat, &r), 400, "n = 1");
    let mut r = sort_request();
    r["threshold"] = json!(1.5);
    check(post(&s, chat, &r), 400, "threshold");
    let mut r = sort_request();
    r["messages"][0]["role"] = json!("tool");
    check(post(&s, chat, &r), 400, "not supported");
    let long = "Sort: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25";
    let v = check(
        post(&s, "/v1/completions", &json!({"prompt": long})),
        400,
        "at most 40",
    );
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    check(
        post(&s, "/v1/completions", &json!({"prompt": [1, 2, 999999]})),
        400,
        "vocabulary",
    );
    let big = json!({"prompt": "x".repeat(3000)}).to_string();
    check(
        post_raw(&s, "/v1/completions", &big, None),
        413,
        "limit of 2000",
    );
    check(get(&s, "/v1/nothing", None), 404, "no endpoint");
    check(get(&s, "/v1/completions", None), 405, "not allowed");
    // The server is still fine.
    assert_eq!(post(&s, chat, &sort_request()).0, 200);
}

#[test]
fn api_key_guards_every_endpoint_but_health() {
    let s = Server::start("key", &["--api-key", "sekret"]);
    assert_eq!(get(&s, "/health", None).0, 200);
    let (st, v) = get(&s, "/v1/models", None);
    assert_eq!(st, 401);
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(get(&s, "/v1/models", Some("wrong")).0, 401);
    assert_eq!(get(&s, "/v1/models", Some("sekret")).0, 200);
    let body = sort_request().to_string();
    assert_eq!(post_raw(&s, "/v1/chat/completions", &body, None).0, 401);
    assert_eq!(
        post_raw(&s, "/v1/chat/completions", &body, Some("sekret")).0,
        200
    );
}

#[test]
fn binding_beyond_loopback_needs_a_key() {
    // Refused before binding: nothing listens, so no traffic leaves loopback.
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args([
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "-m",
            "/nonexistent.dlm",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // The model is checked first; with a real model the address is refused.
    assert!(err.contains("does not exist"), "{err}");
    let cache = common::TempDir::new("serve-open");
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DLM_CACHE", cache.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--api-key"), "{err}");
}

#[test]
fn a_client_that_hangs_up_cancels_its_generation() {
    let s = Server::start("cancel", &[]);
    // Non-streamed: the client gives up after a second.
    let r = agent(Duration::from_secs(1))
        .post(s.url("/v1/completions"))
        .send(long_request().to_string());
    assert!(r.is_err(), "the long request should not finish in a second");
    let h = wait_health(&s, 30, |h| h["cancelled"] == 1 && h["active"] == 0);
    assert_eq!(h["completed"], 0);

    // Streamed: read the first chunk (the role), then hang up while the canvas is still
    // silent, so only the server's noticing the closed connection can stop it.
    let mut body = long_request();
    body.as_object_mut().unwrap().remove("prompt");
    body["messages"] = sort_request()["messages"].clone();
    body["stream"] = json!(true);
    let r = agent(Duration::from_secs(60))
        .post(s.url("/v1/chat/completions"))
        .send(body.to_string())
        .unwrap();
    let mut lines = BufReader::new(r.into_body().into_reader()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("data: "), "{first}");
    drop(lines);
    wait_health(&s, 30, |h| h["cancelled"] == 2 && h["active"] == 0);
    // And the worker is free for the next request.
    assert_eq!(post(&s, "/v1/chat/completions", &sort_request()).0, 200);
}

#[test]
fn timeouts_and_a_full_queue_are_refused_clearly() {
    let s = Server::start("queue", &["--queue", "1", "--timeout", "4"]);
    let slow = |body: Value| {
        let url = s.url("/v1/completions");
        std::thread::spawn(move || {
            let mut r = agent(Duration::from_secs(60))
                .post(url)
                .send(body.to_string())
                .unwrap();
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap())
        })
    };
    let a = slow(long_request());
    wait_health(&s, 30, |h| h["active"] == 1);
    let b = slow(long_request());
    wait_health(&s, 30, |h| h["queued"] == 1);
    let (st, v) = post(&s, "/v1/completions", &long_request());
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["code"], "queue_full");
    // Both slow ones hit the 4-second timeout (the queued one counts its wait).
    for h in [a, b] {
        let (st, body) = h.join().unwrap();
        assert_eq!(st, 504, "{body}");
        assert!(body.contains("timeout"), "{body}");
    }
}

#[test]
fn concurrent_requests_do_not_mix_state() {
    let s = Server::start("parallel", &["--parallel", "2"]);
    let prompts = ["Sort: 42 7 93 15", "Sort: 5 3 9 1 8"];
    let req = |p: &str| {
        json!({"messages": [{"role": "user", "content": p}], "temperature": 0.8, "seed": 5,
               "max_tokens": 32, "block_length": 8})
    };
    let solo: Vec<Value> = prompts
        .iter()
        .map(|p| post(&s, "/v1/chat/completions", &req(p)).1["choices"].clone())
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let url = s.url("/v1/chat/completions");
            let body = req(prompts[i % 2]).to_string();
            std::thread::spawn(move || {
                let mut r = agent(Duration::from_secs(120))
                    .post(url)
                    .send(body)
                    .unwrap();
                let v: Value =
                    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                (i, v)
            })
        })
        .collect();
    for h in handles {
        let (i, v) = h.join().unwrap();
        assert_eq!(
            v["choices"],
            solo[i % 2],
            "request {i} differs from its solo run"
        );
    }
}
