//! The forward entry points the newer caches build on, on the reference models: chosen query
//! rows against every cached key, layers `l..L` from stored hidden states, attention probes,
//! and the request checks.

mod common;

use dlm_runtime::RuntimeError;
use dlm_runtime::model::{Attend, Forward, Model, Positions, Probe, Request};

fn open(name: &str) -> Option<Model> {
    let reference = common::reference_dir()?;
    let dir = common::temp_dir(&format!("entry-{name}"));
    let path = common::convert_reference(&reference, name, "f32", &dir);
    let model = Model::open(&path).expect("open");
    std::fs::remove_dir_all(&dir).ok();
    Some(model)
}

/// A canvas with a few masks, of the model's vocabulary.
fn canvas(model: &Model, len: usize) -> Vec<u32> {
    let mask = model.config().mask_id;
    (0..len)
        .map(|i| {
            if i % 3 == 2 {
                mask
            } else {
                (i * 37 % 1500) as u32 + 3
            }
        })
        .collect()
}

fn max_rel_diff(a: &[f32], b: &[f32], vocab: usize) -> f32 {
    let mut worst = 0f32;
    for (x, y) in a.chunks(vocab).zip(b.chunks(vocab)) {
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs() / scale);
        }
    }
    worst
}

fn check_model(name: &str) {
    let Some(model) = open(name) else { return };
    let vocab = model.vocab_size();
    let len = 24;
    let tokens = canvas(&model, len);
    let all: Vec<usize> = (0..len).collect();
    let full = model.logits(&tokens, &all).expect("full forward");

    // A full pass storing keys, values and hidden states.
    let mut cache = model.new_cache(len, true).expect("cache");
    let mut store = Request::logits(&tokens, 0, &all);
    store.store = true;
    let stored = model.run(store, Some(&mut cache)).expect("store pass");
    assert_eq!(stored.logits, full, "{name}: storing changes nothing");

    // Layers l..L from the stored hidden states give the full pass's logits exactly.
    for l in 1..model.n_layers() {
        let mut req = Request::logits(&tokens, 0, &all);
        req.from_layer = l;
        let r = model.run(req, Some(&mut cache)).expect("from_layer");
        assert_eq!(r.logits, full, "{name}: from layer {l}");
    }

    // Chosen query rows against every cached key: the same rows as the full pass (the key
    // order differs, so equal within rounding).
    let window = [2usize, 5, 6, 11, 20];
    let win_tokens: Vec<u32> = window.iter().map(|&p| tokens[p]).collect();
    let rows: Vec<usize> = (0..window.len()).collect();
    let mut req = Request::logits(&win_tokens, 0, &rows);
    req.positions = Positions::List(&window);
    req.attend = Attend::Cache;
    let r = model.run(req, Some(&mut cache)).expect("window pass");
    let want: Vec<f32> = window
        .iter()
        .flat_map(|&p| full[p * vocab..(p + 1) * vocab].iter().copied())
        .collect();
    let d = max_rel_diff(&r.logits, &want, vocab);
    println!("{name}: window rows vs full pass, max relative difference {d:.2e}");
    assert!(d < 1e-5, "{name}: window rows differ by {d}");

    // Attention probes: off by default, and asking for them changes no logit.
    assert!(stored.attention.is_empty());
    let keys = [0usize, 7, 23];
    let mut req = Request::logits(&tokens, 0, &all);
    req.probe = Some(Probe {
        keys: &keys,
        mass: true,
    });
    let p = model.run(req, None).expect("probe");
    assert_eq!(p.logits, full, "{name}: probing changes nothing");
    assert_eq!(p.attention.len(), model.n_layers());
    for (l, la) in p.attention.iter().enumerate() {
        assert_eq!(la.columns.len(), keys.len() * len);
        assert_eq!(la.mass.len(), len);
        // Every query row's probabilities sum to 1, so the keys' mass sums to the rows.
        let total: f32 = la.mass.iter().sum();
        assert!(
            (total - len as f32).abs() < 1e-3,
            "{name} layer {l}: mass {total}"
        );
        for (k, &key) in keys.iter().enumerate() {
            let col: f32 = la.columns[k * len..(k + 1) * len].iter().sum();
            assert!(
                (col - la.mass[key]).abs() < 1e-4,
                "{name} layer {l} key {key}"
            );
            assert!(
                la.columns[k * len..(k + 1) * len]
                    .iter()
                    .all(|&v| (0.0..=1.0).contains(&v))
            );
        }
    }

    // The checks name what is wrong.
    let bad =
        |req: Request<'_>, cache: Option<&mut dlm_runtime::model::KvCache>, what: &str| match model
            .run(req, cache)
        {
            Err(RuntimeError::InvalidRequest(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{name}: expected an error about {what}, got {other:?}"),
        };
    let mut req = Request::logits(&win_tokens, 0, &rows);
    req.positions = Positions::List(&[5, 2, 6, 11, 20]);
    bad(req, None, "ascending");
    let mut req = Request::logits(&tokens, 0, &all);
    req.from_layer = 1;
    bad(req, None, "cache");
    let mut plain = model.new_cache(len, false).expect("cache");
    let mut req = Request::logits(&tokens, 0, &all);
    req.from_layer = 1;
    bad(req, Some(&mut plain), "hidden states");
    let mut req = Request::logits(&tokens[..8], 0, &rows);
    req.probe = Some(Probe {
        keys: &[9],
        mass: false,
    });
    bad(req, None, "not attended");
    let mut req = Request::logits(&win_tokens, 0, &rows);
    req.positions = Positions::List(&window);
    req.attend = Attend::Cache;
    bad(req, None, "needs a KV cache");
}

#[test]
fn llada_entry_points() {
    check_model("llada-tiny");
}

#[test]
fn dream_entry_points() {
    check_model("dream-tiny");
}
