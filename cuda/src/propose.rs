//! Proposals next to the logits. LLaDA greedy rows without a filter (the common case) are
//! computed on the device: the argmax and the f64 top-1 probability, 12 bytes a row back.
//! Every other rule (Dream's confidences, top-k/top-p, temperature > 0, random remasking)
//! copies the logits rows to the host and runs `dlm_runtime::decode::propose_rows`, the CPU
//! backend's own code, so results match it exactly.

use crate::{CudaAct, CudaBackend, launch, ok, rows_cfg};
use cudarc::driver::PushKernelArg;
use dlm_runtime::backend::Backend;
use dlm_runtime::decode::{Proposal, ProposeSpec, Rng, RowRule, propose_rows};

pub(crate) fn propose(
    be: &CudaBackend,
    logits: &CudaAct,
    vocab: usize,
    spec: &ProposeSpec,
    rng: &mut Rng,
) -> Vec<Proposal> {
    let rows = logits.len / vocab.max(1);
    let filtered = spec.filter.top_k.is_some() || spec.filter.top_p.is_some_and(|p| p < 1.0);
    let on_device = matches!(spec.rule, RowRule::Llada)
        && spec.temperature == 0.0
        && !filtered
        && !spec.random_confidence;
    if !on_device || rows == 0 {
        return propose_rows(&be.to_host(logits), vocab, spec, rng);
    }
    let mut tok = ok(be.stream.alloc_zeros::<i32>(rows));
    let mut conf = ok(be.stream.alloc_zeros::<f64>(rows));
    let v = vocab as i32;
    let mut b = be.stream.launch_builder(&be.k.propose_llada_greedy);
    b.arg(&logits.buf).arg(&v).arg(&mut tok).arg(&mut conf);
    launch(b, rows_cfg(rows, 256));
    let tok = ok(be.stream.memcpy_dtov(&tok));
    let conf = ok(be.stream.memcpy_dtov(&conf));
    tok.into_iter()
        .zip(conf)
        .map(|(t, c)| Proposal {
            token: t as u32,
            confidence: c,
        })
        .collect()
}
