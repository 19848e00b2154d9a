//! The demo model shipped in `models/demo`: README's first command answers correctly, and
//! `dlm eval` measures it well above chance on its held-out tasks.

mod common;

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The arguments after `cargo run --release --` of README's first command.
fn readme_first_command() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- "))
        .expect("README shows `cargo run --release -- ...`");
    let rest = &line["cargo run --release -- ".len()..];
    // Split on spaces outside double quotes (the README's own quoting).
    let mut args = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    for c in rest.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    args
}

#[test]
fn readme_first_command_answers() {
    let args = readme_first_command();
    assert_eq!(args[0], "run");
    let cache = common::temp_dir("readme-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(&args)
        .current_dir(repo())
        .env("DLM_CACHE", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The prompt is a sort task: the answer is its numbers in order.
    let prompt = args[1].strip_prefix("Sort: ").expect("a Sort: prompt");
    let mut nums: Vec<u32> = prompt.split(' ').map(|n| n.parse().unwrap()).collect();
    nums.sort();
    let want: Vec<String> = nums.iter().map(|n| n.to_string()).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want.join(" "));
    assert!(stderr.contains("tokens/s"), "{stderr}");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn eval_on_shipped_tasks_is_far_above_chance() {
    let cache = common::temp_dir("eval-cache");
    let tasks = repo().join("models/demo/tasks");
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(["eval", "--limit", "8", "--json", "--tasks"])
        .arg(tasks.join("sort.jsonl"))
        .arg("--tasks")
        .arg(tasks.join("add.jsonl"))
        .arg("--text")
        .arg(repo().join("models/demo/heldout.txt"))
        .args(["--max-windows", "2", "--mc", "2"])
        .current_dir(repo())
        .env("DLM_CACHE", &cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("eval --json");
    for t in v["tasks"].as_array().unwrap() {
        // Chance is essentially zero for an exact multi-token answer; the model gets ~all.
        let acc = t["accuracy"].as_f64().unwrap();
        assert!(acc >= 0.75, "{}: accuracy {acc}", t["task"]);
    }
    // A trained model's bound is far below the uniform log(4096) = 8.3 nats.
    let nats = v["text"]["nats_per_token"].as_f64().unwrap();
    assert!(nats > 0.5 && nats < 6.0, "text bound {nats}");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn q4_k_on_rows_of_384_falls_back_to_q4_0_and_says_so() {
    // The demo's d 384 is not a multiple of 256: a q4_k request stays 4-bit (q4_0), the
    // convert output says so, and the file records and shows the real mix.
    let dir = common::temp_dir("q4k-fallback");
    let out = dir.join("demo-q4k.dlm");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_dlm"))
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let o = out.to_str().unwrap();
    let (_, err) = run(&["convert", "models/demo", "-o", o, "--quant", "q4_k"]);
    assert!(
        err.contains("tensors asked for q4_k are stored as q4_0"),
        "{err}"
    );
    assert!(err.contains("storage used: f32: 13 tensors"), "{err}");
    let (json, _) = run(&["inspect", "--json", o]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mix = v["quant_mix"].as_array().unwrap();
    let types: Vec<&str> = mix.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["f32", "q4_0"], "{mix:?}");
    let recorded = v["metadata"]["general.quant_mix"].as_array().unwrap();
    assert!(
        recorded[1].as_str().unwrap().starts_with("q4_0 44 "),
        "{recorded:?}"
    );
    let (text, _) = run(&["inspect", o]);
    assert!(text.contains("storage by type (policy q4_k)"), "{text}");
    assert!(!text.contains("warning"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `dlm eval --json` on the first `limit` prompts of `tasks` with `extra` arguments.
fn eval_json(args: &[&str], tasks: &[&str], limit: &str, cache: &Path) -> serde_json::Value {
    let dir = repo().join("models/demo/tasks");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlm"));
    cmd.args(["eval", "--limit", limit, "--json"]).args(args);
    for t in tasks {
        cmd.arg("--tasks").arg(dir.join(format!("{t}.jsonl")));
    }
    let out = cmd
        .current_dir(repo())
        .env("DLM_CACHE", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("eval --json")
}

#[test]
fn demo_elastic_gamma_comes_from_the_file_and_the_flag_wins() {
    // models/demo/generation_config.json carries elastic_gamma 0.98 (docs/elastic-cache.md:
    // the paper's 0.9 refreshes too rarely on this model and loses sort); convert writes it
    // to diffusion.elastic_gamma and the decoder reads it back as 0.98, not its f32 bits.
    let cache = common::temp_dir("elastic-gamma-cache");
    let v = eval_json(&["--cache", "elastic"], &["add"], "2", &cache);
    let decoding = v["decoding"].as_str().unwrap();
    assert!(decoding.contains("gamma 0.98 "), "{decoding}");
    let v = eval_json(
        &["--cache", "elastic", "--gamma", "0.9"],
        &["add"],
        "2",
        &cache,
    );
    let decoding = v["decoding"].as_str().unwrap();
    assert!(decoding.contains("gamma 0.9 "), "{decoding}");
}

#[test]
fn demo_long_elastic_gets_the_uncached_answers_from_fewer_rows() {
    // models/demo-long answers past the first 32-token block (docs/elastic-cache.md). Its
    // file carries elastic_gamma 0.5 (the paper's 0.9 refreshes 9-27 times per answer on
    // it); elastic gets the answers that no cache gets, from a fraction of the query rows.
    let cache = common::temp_dir("long-cache");
    let eval = |mode: &str| {
        let args = [
            "-m",
            "models/demo-long",
            "--tasks",
            "models/demo-long/tasks/count-128.jsonl",
            "--gen-length",
            "128",
            "--steps",
            "64",
            "--block-length",
            "32",
            "--cache",
            mode,
        ];
        eval_json(&args, &[], "2", &cache)
    };
    let (none, elastic) = (eval("none"), eval("elastic"));
    let decoding = elastic["decoding"].as_str().unwrap();
    assert!(decoding.contains("gamma 0.5 "), "{decoding}");
    let (n, e) = (&none["tasks"][0], &elastic["tasks"][0]);
    assert_eq!(n["correct"], 2, "{n}");
    assert_eq!(e["correct"], 2, "{e}");
    // Answers of 64+ tokens: more than one block decoded.
    assert!(n["mean_nfe"].as_f64().unwrap() > 16.0, "{n}");
    let rows = |t: &serde_json::Value| t["mean_query_rows"].as_f64().unwrap();
    assert!(rows(e) * 3.0 < rows(n), "elastic {e} vs none {n}");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_stored_prefix_refresh_reaches_the_decoder_and_the_flag_turns_it_off() {
    // No shipped model stores elastic_prefix_refresh (on demo-long it costs accuracy without a
    // threshold: docs/elastic-cache.md), so a copy of demo-long's folder whose
    // generation_config.json sets it: convert stores diffusion.elastic_prefix_refresh, the
    // decoder uses it (eval's decoding line), and --no-prefix-refresh wins over the file.
    let dir = common::temp_dir("prefix-refresh-model");
    for entry in std::fs::read_dir(repo().join("models/demo-long")).unwrap() {
        let e = entry.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let gen_path = dir.join("generation_config.json");
    let mut g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&gen_path).unwrap()).unwrap();
    g["elastic_prefix_refresh"] = serde_json::json!(true);
    std::fs::write(&gen_path, g.to_string()).unwrap();
    let cache = common::temp_dir("prefix-refresh-cache");
    let model = dir.to_str().unwrap();
    let decoding = |extra: &[&str]| {
        let mut args = vec!["-m", model, "--cache", "elastic", "--gen-length", "64"];
        args.extend_from_slice(extra);
        let v = eval_json(&args, &["add"], "1", &cache);
        v["decoding"].as_str().unwrap().to_string()
    };
    let stored = decoding(&[]);
    assert!(stored.contains(" prefix refresh"), "{stored}");
    let off = decoding(&["--no-prefix-refresh"]);
    assert!(!off.contains("prefix refresh"), "{off}");
    // Without block caching prefix refresh does not apply, and the line does not claim it.
    let no_block = decoding(&["--no-block-cache"]);
    assert!(
        no_block.contains("no block cache") && !no_block.contains("prefix refresh"),
        "{no_block}"
    );
}

#[test]
fn demo_fast_decodes_with_its_stored_few_step_schedule() {
    // The step-distilled student: no decoding flags, so the schedule its generation_config.json
    // carries (at most 4 steps per 32-token answer: threshold 0.9, at least 8 commits a step)
    // comes from the file's diffusion.* keys.
    let cache = common::temp_dir("fast-cache");
    let v = eval_json(
        &["-m", "models/demo-fast"],
        &["sort", "add", "rust"],
        "8",
        &cache,
    );
    let decoding = v["decoding"].as_str().unwrap();
    assert!(
        decoding.contains("steps 4 gen 32 block 32") && decoding.contains("min_per_step 8"),
        "{decoding}"
    );
    assert!(decoding.contains("threshold 0.9"), "{decoding}");
    for t in v["tasks"].as_array().unwrap() {
        let acc = t["accuracy"].as_f64().unwrap();
        let nfe = t["mean_nfe"].as_f64().unwrap();
        assert!(acc >= 0.75, "{}: accuracy {acc}", t["task"]);
        assert!(
            nfe <= 4.0,
            "{}: mean nfe {nfe} over the 4-step budget",
            t["task"]
        );
    }
    // Every cache keeps the budget (a cached block may add one step that commits nothing, but
    // never past 4 here), and a fixed schedule (threshold off) runs exactly 4 steps.
    for args in [
        &["-m", "models/demo-fast", "--cache", "prefix"][..],
        &["-m", "models/demo-fast", "--cache", "dual"][..],
        &["-m", "models/demo-fast", "--cache", "elastic"][..],
    ] {
        let v = eval_json(args, &["add"], "4", &cache);
        let t = &v["tasks"][0];
        assert!(t["mean_nfe"].as_f64().unwrap() <= 4.0, "{args:?}: {t}");
        assert!(t["accuracy"].as_f64().unwrap() >= 0.5, "{args:?}: {t}");
    }
    let v = eval_json(
        &["-m", "models/demo-fast", "--threshold", "0"],
        &["add"],
        "4",
        &cache,
    );
    assert_eq!(v["tasks"][0]["mean_nfe"].as_f64().unwrap(), 4.0, "{v}");
    assert!(
        !v["decoding"].as_str().unwrap().contains("threshold"),
        "{v}"
    );
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn run_prompt_sources_json_fields_and_a_closed_pipe() {
    let cache = common::temp_dir("run-sources");
    let dlm = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlm"));
        c.current_dir(repo()).env("DLM_CACHE", &cache);
        c
    };
    let prompt = "Sort: 42 7 93 15";
    // --json: the old fields, plus the prompt length, the answer's length and the seed.
    let out = dlm()
        .args(["run", prompt, "--json", "--seed", "9", "--threshold", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run --json");
    for k in ["output_ids", "text", "nfe", "seconds", "tokens_per_s"] {
        assert!(!v[k].is_null(), "{k} missing: {v}");
    }
    assert_eq!(v["text"], "7 15 42 93");
    assert_eq!(v["seed"], 9);
    assert_eq!(v["completion_tokens"], 10);
    let n_ids = v["output_ids"].as_array().unwrap().len() as u64;
    assert_eq!(
        v["prompt_tokens"].as_u64().unwrap() + v["gen_length"].as_u64().unwrap(),
        n_ids
    );
    // Without --seed a random one is drawn and reported.
    let seed_of = || {
        let out = dlm()
            .args(["run", prompt, "--json", "-n", "8"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["seed"].as_u64().unwrap()
    };
    assert_ne!(seed_of(), seed_of());

    // The same answer from -p, -f FILE and -p - (stdin), streamed text ending in a newline.
    let file = cache.join("prompt.txt");
    std::fs::write(&file, prompt).unwrap();
    let from_p = dlm().args(["run", "-p", prompt]).output().unwrap();
    let from_f = dlm().args(["run", "-f"]).arg(&file).output().unwrap();
    let mut child = dlm()
        .args(["run", "-p", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(prompt.as_bytes())
        .unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    for out in [&from_p, &from_f, &from_stdin] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "7 15 42 93\n");
    }
    // A missing prompt file is named.
    let out = dlm()
        .args(["run", "-f", "/nonexistent/p.txt"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/p.txt"),
        "{err}"
    );

    // A reader that goes away: no panic, a clean exit.
    let out = Command::new("sh")
        .arg("-c")
        .arg("\"$DLM\" run 'Sort: 9 8 7 6 5 4 3 2 1' -n 64 --block-length 8 --steps 64 --no-early-stop | head -c 1")
        .env("DLM", env!("CARGO_BIN_EXE_dlm"))
        .env("DLM_CACHE", &cache)
        .current_dir(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
}
