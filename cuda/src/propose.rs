//! Proposals next to the logits. Greedy rows without a filter (the common case) are computed
//! on the device for every rule: the argmax and the rule's confidence (LLaDA's and Dream's
//! probability, Dream's margin and negative entropy; softmax of the raw logits in f64), 12
//! bytes a row back; LLaDA `random` remasking then draws each row's confidence on the host, in
//! row order, as the CPU does. Sampling (temperature > 0, whose draws follow the CPU's random
//! stream value by value) and top-k/top-p filters copy the logits rows to the host and run
//! `dlm_runtime::decode::propose_rows`, the CPU backend's own code, so results match it exactly.

use crate::{CudaAct, CudaBackend, launch, ok, rows_cfg};
use cudarc::driver::PushKernelArg;
use dlm_runtime::backend::Backend;
use dlm_runtime::decode::{DreamConfidence, Proposal, ProposeSpec, Rng, RowRule, propose_rows};

pub(crate) fn propose(
    be: &CudaBackend,
    logits: &CudaAct,
    vocab: usize,
    spec: &ProposeSpec,
    rng: &mut Rng,
) -> Vec<Proposal> {
    let rows = logits.len / vocab.max(1);
    let filtered = spec.filter.top_k.is_some() || spec.filter.top_p.is_some_and(|p| p < 1.0);
    let greedy = spec.temperature == 0.0 && !filtered;
    // propose.cu's mode for the rule; kernels.cu's LLaDA kernel when propose.cu is missing.
    let mode = match spec.rule {
        RowRule::Llada => 0i32,
        RowRule::Dream(DreamConfidence::Probability) => 0,
        RowRule::Dream(DreamConfidence::Margin) => 1,
        RowRule::Dream(DreamConfidence::NegEntropy) => 2,
    };
    let kernel = match (&be.k.propose_greedy, spec.rule) {
        (Some(f), _) => Some(f),
        (None, RowRule::Llada) => Some(&be.k.propose_llada_greedy),
        (None, RowRule::Dream(_)) => None,
    };
    let Some(kernel) = kernel.filter(|_| greedy && rows > 0) else {
        return propose_rows(&be.to_host(logits), vocab, spec, rng);
    };
    let mut tok = ok(be.stream.alloc_zeros::<i32>(rows));
    let mut conf = ok(be.stream.alloc_zeros::<f64>(rows));
    let v = vocab as i32;
    let mut b = be.stream.launch_builder(kernel);
    b.arg(&logits.buf).arg(&v);
    if be.k.propose_greedy.is_some() {
        b.arg(&mode);
    }
    b.arg(&mut tok).arg(&mut conf);
    launch(b, rows_cfg(rows, 256));
    let tok = ok(be.stream.memcpy_dtov(&tok));
    let conf = ok(be.stream.memcpy_dtov(&conf));
    tok.into_iter()
        .zip(conf)
        .map(|(t, c)| Proposal {
            token: t as u32,
            confidence: if spec.random_confidence {
                rng.uniform()
            } else {
                c
            },
        })
        .collect()
}
