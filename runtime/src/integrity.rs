//! Load-time checks of weight values that a well-formed file can still get wrong: the norm
//! weights and biases (a few KiB, checked on every load) must be finite, and, when asked,
//! every tensor must match its stored checksum and every matrix must dequantize to finite
//! values (catches NaN or infinite block scales that a faulty writer stored with a valid
//! checksum); that reads the whole file.

use crate::RuntimeError;
use crate::model::{Matrix, Weights};
use dlm_formats::DlmFile;
use rayon::prelude::*;

/// Every norm weight and bias is finite; the error names the first tensor that is not.
/// Costs one pass over `(2 n_layers + 1) × dim` floats (plus the biases).
pub fn check_small_weights(w: &Weights) -> Result<(), RuntimeError> {
    let check = |name: String, v: &[f32]| match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(RuntimeError::Corrupt(format!(
            "tensor {name:?} holds {} at index {i} (a norm weight or bias must be finite)",
            v[i]
        ))),
    };
    for (i, l) in w.layers.iter().enumerate() {
        check(format!("blk.{i}.attn_norm"), &l.attn_norm)?;
        check(format!("blk.{i}.ffn_norm"), &l.ffn_norm)?;
        if let Some((bq, bk, bv)) = &l.bias {
            check(format!("blk.{i}.bq"), bq)?;
            check(format!("blk.{i}.bk"), bk)?;
            check(format!("blk.{i}.bv"), bv)?;
        }
    }
    check("out_norm".into(), &w.out_norm)
}

/// Every tensor against its stored checksum (`dlm verify`'s check, as an option of loading).
pub fn verify_checksums(file: &DlmFile, bytes: &[u8]) -> Result<(), RuntimeError> {
    file.verify_checksums(bytes).map_err(|e| match e {
        dlm_formats::FormatError::Checksum { tensor } => RuntimeError::Corrupt(format!(
            "tensor {tensor:?} fails its checksum (flipped or overwritten bytes)"
        )),
        e => e.into(),
    })
}

/// Every row of every matrix dequantizes to finite values; the error names the first tensor
/// and row that does not.
pub fn check_all_matrices(w: &Weights, bytes: &[u8]) -> Result<(), RuntimeError> {
    let mut all: Vec<(String, &Matrix)> = vec![("tok_embd".into(), &w.tok_embd)];
    for (i, l) in w.layers.iter().enumerate() {
        for (n, m) in [
            ("wq", &l.wq),
            ("wk", &l.wk),
            ("wv", &l.wv),
            ("wo", &l.wo),
            ("w_gate", &l.w_gate),
            ("w_up", &l.w_up),
            ("w_down", &l.w_down),
        ] {
            all.push((format!("blk.{i}.{n}"), m));
        }
    }
    all.push(("head".into(), &w.head));
    for (name, m) in all {
        let view = m.view(bytes);
        let bad_row = (0..m.rows).into_par_iter().find_first(|&r| {
            let mut row = vec![0.0f32; m.cols];
            dlm_simd::dequantize_row(&view, r, &mut row);
            row.iter().any(|x| !x.is_finite())
        });
        if let Some(r) = bad_row {
            return Err(RuntimeError::Corrupt(format!(
                "tensor {name:?} row {r} holds NaN or infinite values (a bad block scale?)"
            )));
        }
    }
    Ok(())
}
