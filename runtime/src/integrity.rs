//! Load-time checks of weight values that a well-formed file can still get wrong: the norm
//! weights and biases (a few KiB, checked on every load) must be finite, and, when asked,
//! every tensor must match its stored checksum (reads the whole file).

use crate::RuntimeError;
use crate::model::Weights;
use dlm_formats::DlmFile;

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
