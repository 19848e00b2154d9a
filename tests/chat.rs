//! `dlm chat` on piped stdin: the earlier turns' keys and values are reused (and what that
//! saves), `--no-reuse` computes them every turn, and /reset and dropped turns start over.

mod common;

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// `dlm chat --json` with `args`, fed `lines`; the JSON line of every answered turn.
fn chat(args: &[&str], lines: &[&str], cache: &common::TempDir) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(["chat", "--json", "--seed", "1", "-n", "16", "--steps", "16"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DLM_CACHE", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dlm chat");
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

const TURNS: [&str; 3] = ["Sort: 42 7 93 15", "Reverse: pain", "Add: 1 + 5"];

#[test]
fn reuse_keeps_the_earlier_turns_and_computes_only_the_new_tokens() {
    let cache = common::temp_dir("chat-reuse");
    let on = chat(&[], &TURNS, &cache);
    let off = chat(&["--no-reuse"], &TURNS, &cache);
    assert_eq!((on.len(), off.len()), (3, 3));
    // The first turn has nothing to reuse: the same answer either way.
    assert_eq!(on[0]["text"], off[0]["text"]);
    assert_eq!(on[0]["text"], "7 15 42 93");
    assert_eq!(n(&on[0], "reused_tokens"), 0);
    for t in 1..3 {
        assert_eq!(n(&on[t], "prompt_tokens"), n(&off[t], "prompt_tokens"));
        assert_eq!(n(&off[t], "reused_tokens"), 0);
        // At least the previous turn's prompt is reused...
        let reused = n(&on[t], "reused_tokens");
        assert!(
            reused >= n(&on[t - 1], "prompt_tokens"),
            "turn {t}: {}",
            on[t]
        );
        // ...so every forward pass runs only the rest: the new turn and the answer.
        let rows_per_pass = |v: &Value| n(v, "query_rows") / n(v, "nfe");
        assert_eq!(
            rows_per_pass(&on[t]),
            n(&on[t], "prompt_tokens") - reused + 16,
            "{}",
            on[t]
        );
        assert!(rows_per_pass(&on[t]) < rows_per_pass(&off[t]));
    }
}

#[test]
fn reset_and_dropped_turns_start_the_cache_over() {
    let cache = common::temp_dir("chat-reset");
    let turns = chat(
        &["-c", "80"],
        &[
            "Sort: 5 3 9 1",
            "/reset",
            "Sort: 8 6 7",
            "Sort: 4 2",
            "Sort: 9 1",
        ],
        &cache,
    );
    assert_eq!(turns.len(), 4);
    // After /reset the conversation is new: nothing is reused.
    assert_eq!(n(&turns[1], "reused_tokens"), 0);
    assert!(n(&turns[2], "reused_tokens") > 0);
    // An 80-token context holds two turns and an answer: the third question drops the
    // oldest turn, and the kept turn moved to its place, so at most the opening that every
    // conversation shares is reused (less than one question's prompt).
    let last = &turns[3];
    assert!(n(last, "dropped_turns") >= 1, "{last}");
    assert!(
        n(last, "reused_tokens") < n(&turns[1], "prompt_tokens"),
        "{last}"
    );
    assert!(n(last, "prompt_tokens") + 16 <= 80);
}
