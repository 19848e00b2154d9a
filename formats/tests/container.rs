//! Write → parse round trips and every rejection of the reader.

mod common;

use common::*;
use dlm_formats::{DlmFile, FormatError, MetaValue, QuantType, keys, write_to_vec};

#[test]
fn round_trip_of_every_meta_type_and_float_tensor() {
    let bytes = sample_file();
    let f = DlmFile::parse(&bytes).expect("parse");
    assert_eq!(f.version, 2);
    assert_eq!(f.meta, sample_meta());
    let tensors = sample_tensors();
    assert_eq!(f.tensors.len(), tensors.len());
    for (info, (decl, data)) in f.tensors.iter().zip(&tensors) {
        assert_eq!(info.name, decl.name);
        assert_eq!(info.quant, decl.quant);
        assert_eq!(info.shape, decl.shape);
        assert_eq!(info.offset % 64, 0, "{} aligned", info.name);
        assert_eq!(info.len_bytes, data.len() as u64);
        assert_eq!(f.tensor_bytes(&bytes, info), &data[..]);
        assert_eq!(info.checksum, dlm_formats::dlmh64(data));
    }
    f.verify_checksums(&bytes).expect("checksums");
    // Values decode back to the floats written.
    let w = f.tensor_data(&bytes, "blk.0.wq").unwrap();
    let w: Vec<f32> = w
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(w[5], 5.0 * 0.25 - 1.0);
    let h = f.tensor_data(&bytes, "norm").unwrap();
    assert_eq!(half::f16::from_le_bytes([h[2], h[3]]).to_f32(), -2.0);
    let b = f.tensor_data(&bytes, "emb").unwrap();
    assert_eq!(half::bf16::from_le_bytes([b[10], b[11]]).to_f32(), 7.5);
    assert_eq!(f.require_tensor("scalar").unwrap().n_elements(), 1);
    assert!(matches!(f.require_tensor("nope"), Err(FormatError::MissingTensor(n)) if n == "nope"));
    assert!(f.tensor("nope").is_none());
}

#[test]
fn empty_file_round_trips() {
    let bytes = write_to_vec(&[], &[]).unwrap();
    assert_eq!(bytes.len(), 64);
    let f = DlmFile::parse(&bytes).unwrap();
    assert!(f.meta.is_empty() && f.tensors.is_empty());
}

#[test]
fn typed_getters() {
    let meta = vec![
        (keys::model::DIM.to_string(), MetaValue::U32(256)),
        (keys::model::NORM_EPS.to_string(), MetaValue::F32(1e-5)),
        (keys::model::QKV_BIAS.to_string(), MetaValue::Bool(true)),
        (
            keys::model::FAMILY.to_string(),
            MetaValue::Str("dream".into()),
        ),
        (
            keys::tokenizer::MERGES.to_string(),
            MetaValue::ArrStr(vec!["a b".into()]),
        ),
        (
            keys::tokenizer::SPECIAL_IDS.to_string(),
            MetaValue::ArrU32(vec![1, 2]),
        ),
        ("x.u64".to_string(), MetaValue::U64(7)),
    ];
    let bytes = write_to_vec(&meta, &[]).unwrap();
    let f = DlmFile::parse(&bytes).unwrap();
    assert_eq!(f.get_u32(keys::model::DIM).unwrap(), 256);
    assert_eq!(f.get_f32(keys::model::NORM_EPS).unwrap(), 1e-5);
    assert!(f.get_bool(keys::model::QKV_BIAS).unwrap());
    assert_eq!(f.get_str(keys::model::FAMILY).unwrap(), "dream");
    assert_eq!(
        f.get_str_array(keys::tokenizer::MERGES).unwrap(),
        ["a b".to_string()]
    );
    assert_eq!(
        f.get_u32_array(keys::tokenizer::SPECIAL_IDS).unwrap(),
        [1, 2]
    );
    assert_eq!(f.get_u64("x.u64").unwrap(), 7);
    assert_eq!(f.meta_get(keys::model::DIM), Some(&MetaValue::U32(256)));
    assert_eq!(f.meta_get("absent"), None);

    // Missing: required → MissingKey, optional → default.
    let missing = keys::diffusion::STEPS;
    assert!(matches!(f.get_u32(missing), Err(FormatError::MissingKey(k)) if k == missing));
    assert!(matches!(
        f.get_str("absent"),
        Err(FormatError::MissingKey(_))
    ));
    assert_eq!(f.get_u32_or(missing, 64).unwrap(), 64);
    assert_eq!(f.get_u64_or(missing, 9).unwrap(), 9);
    assert_eq!(f.get_f32_or(missing, 0.5).unwrap(), 0.5);
    assert!(!f.get_bool_or(missing, false).unwrap());
    assert_eq!(f.get_str_or(missing, "x").unwrap(), "x");
    assert!(f.get_str_array_or(missing, &[]).unwrap().is_empty());
    assert_eq!(f.get_u32_array_or(missing, &[3]).unwrap(), [3]);
    // Present optional keys are read, not defaulted.
    assert_eq!(f.get_u32_or(keys::model::DIM, 1).unwrap(), 256);

    // Wrong type, required or optional.
    let wrong = |r: Result<(), FormatError>, want: &str| match r {
        Err(FormatError::WrongKeyType { expected, .. }) => assert_eq!(expected, want),
        other => panic!("expected WrongKeyType({want}), got {other:?}"),
    };
    wrong(f.get_u32(keys::model::FAMILY).map(drop), "u32");
    wrong(f.get_f32(keys::model::DIM).map(drop), "f32");
    wrong(f.get_bool(keys::model::DIM).map(drop), "bool");
    wrong(f.get_str(keys::model::DIM).map(drop), "str");
    wrong(f.get_str_array(keys::model::DIM).map(drop), "[str]");
    wrong(f.get_u32_array(keys::tokenizer::MERGES).map(drop), "[u32]");
    wrong(f.get_u32_or(keys::model::FAMILY, 0).map(drop), "u32");
    wrong(f.get_str_or(keys::model::DIM, "").map(drop), "str");
}

fn expect_err(bytes: &[u8]) -> FormatError {
    match DlmFile::parse(bytes) {
        Ok(_) => panic!("parse accepted a bad file"),
        Err(e) => e,
    }
}

#[test]
fn every_truncation_is_rejected() {
    let good = sample_file();
    for len in 0..good.len() {
        let cut = &good[..len];
        expect_err(cut);
        // Also with the header's file size patched to agree, so parsing reaches the part cut.
        if len >= 64 {
            let mut patched = cut.to_vec();
            wr_u64(&mut patched, 56, len as u64);
            expect_err(&patched);
        }
    }
    assert!(matches!(
        expect_err(&good[..good.len() - 1]),
        FormatError::Truncated { .. }
    ));
    assert!(matches!(
        expect_err(&good[..10]),
        FormatError::Truncated { what: "header", .. }
    ));
    // Trailing garbage is rejected too.
    let mut long = good.clone();
    long.push(0);
    expect_err(&long);
}

#[test]
fn wrong_magic() {
    let mut b = sample_file();
    b[0] = b'G';
    assert!(matches!(expect_err(&b), FormatError::BadMagic(m) if &m == b"GLM\0"));
}

#[test]
fn newer_and_zero_versions() {
    let mut b = sample_file();
    assert_eq!(rd_u32(&b, 4), dlm_formats::layout::VERSION);
    wr_u32(&mut b, 4, 3);
    assert!(matches!(expect_err(&b), FormatError::UnsupportedVersion(3)));
    wr_u32(&mut b, 4, 0);
    assert!(matches!(expect_err(&b), FormatError::UnsupportedVersion(0)));
}

#[test]
fn bad_alignment_and_reserved_header_fields() {
    for align in [0u32, 32, 63, 96, 1 << 21] {
        let mut b = sample_file();
        wr_u32(&mut b, 8, align);
        assert!(
            matches!(expect_err(&b), FormatError::Invalid { offset: 8, .. }),
            "{align}"
        );
    }
    let mut b = sample_file();
    wr_u32(&mut b, 12, 1);
    assert!(matches!(
        expect_err(&b),
        FormatError::Invalid { offset: 12, .. }
    ));
}

/// A version-1 file: the sample rewritten with version 1 and the version-1 ids of its types.
fn as_version_1(mut b: Vec<u8>, q6k: Option<&str>) -> Vec<u8> {
    wr_u32(&mut b, 4, 1);
    for e in entries(&b) {
        let q = QuantType::from_id(rd_u32(&b, e.quant_at)).unwrap();
        let v1 = match q {
            QuantType::F32 => 0,
            QuantType::F16 => 1,
            QuantType::BF16 => 2,
            QuantType::Q8_0 => 8,
            QuantType::Q4_0 => 9,
            QuantType::Q4K => 12,
            QuantType::Q6K => 14,
        };
        wr_u32(&mut b, e.quant_at, v1);
    }
    if let Some(name) = q6k {
        let e = entry(&b, name);
        wr_u32(&mut b, e.quant_at, 14);
    }
    b
}

#[test]
fn version_1_files_load_with_their_old_ids() {
    let mut tensors = sample_tensors();
    tensors.push((decl("q4", QuantType::Q4_0, &[1, 32]), fill(18, 3)));
    tensors.push((decl("q4k", QuantType::Q4K, &[1, 256]), fill(144, 5)));
    let v2 = write_to_vec(&sample_meta(), &tensors).unwrap();
    let v1 = as_version_1(v2.clone(), None);
    let (f1, f2) = (DlmFile::parse(&v1).unwrap(), DlmFile::parse(&v2).unwrap());
    assert_eq!((f1.version, f2.version), (1, 2));
    assert_eq!(f1.tensors.len(), tensors.len());
    for (a, b) in f1.tensors.iter().zip(&f2.tensors) {
        assert_eq!((&a.name, a.quant, &a.shape), (&b.name, b.quant, &b.shape));
        assert_eq!(f1.tensor_bytes(&v1, a), f2.tensor_bytes(&v2, b));
    }
    f1.verify_checksums(&v1).unwrap();
}

#[test]
fn version_1_q6_k_asks_for_reconversion() {
    // A q6_k-shaped tensor (210 bytes, 256 values) carrying the old id 14.
    let mut tensors = sample_tensors();
    tensors.push((decl("wv", QuantType::Q6K, &[1, 256]), fill(210, 1)));
    let b = as_version_1(write_to_vec(&sample_meta(), &tensors).unwrap(), Some("wv"));
    let e = expect_err(&b);
    assert!(
        matches!(
            e,
            FormatError::ObsoleteQuantType {
                id: 14,
                version: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("reconvert"), "{e}");
    // The same id in a version-2 file is just unknown (ids never overlap).
    let mut b2 = write_to_vec(&sample_meta(), &tensors).unwrap();
    let at = entry(&b2, "wv").quant_at;
    wr_u32(&mut b2, at, 14);
    assert!(matches!(expect_err(&b2), FormatError::UnknownQuantType(14)));
}

#[test]
fn unknown_quant_type() {
    let mut b = sample_file();
    let e = entry(&b, "norm");
    wr_u32(&mut b, e.quant_at, 3);
    assert!(matches!(expect_err(&b), FormatError::UnknownQuantType(3)));
    wr_u32(&mut b, e.quant_at, u32::MAX);
    assert!(matches!(
        expect_err(&b),
        FormatError::UnknownQuantType(u32::MAX)
    ));
}

#[test]
fn unknown_meta_type_tag() {
    let meta = vec![("k".to_string(), MetaValue::U32(5))];
    let mut b = write_to_vec(&meta, &[]).unwrap();
    // Entry at 64: key length (4), "k" (1), tag.
    assert_eq!(rd_u32(&b, 69), 0);
    wr_u32(&mut b, 69, 11);
    assert!(matches!(expect_err(&b), FormatError::UnknownMetaType { key, tag: 11 } if key == "k"));
}

#[test]
fn bad_bool_byte() {
    let meta = vec![("k".to_string(), MetaValue::Bool(true))];
    let mut b = write_to_vec(&meta, &[]).unwrap();
    assert_eq!(b[73], 1);
    b[73] = 2;
    assert!(matches!(expect_err(&b), FormatError::Invalid { .. }));
}

#[test]
fn misaligned_tensor() {
    let mut b = sample_file();
    let e = entry(&b, "emb");
    let off = rd_u64(&b, e.offset_at);
    wr_u64(&mut b, e.offset_at, off + 4);
    match expect_err(&b) {
        FormatError::Misaligned {
            tensor,
            offset,
            align,
        } => {
            assert_eq!((tensor.as_str(), offset, align), ("emb", off + 4, 64));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tensor_before_data_section_or_past_end() {
    let mut b = sample_file();
    let e = entry(&b, "emb");
    wr_u64(&mut b, e.offset_at, 0);
    expect_err(&b);
    let mut b = sample_file();
    let len = b.len() as u64;
    wr_u64(&mut b, e.offset_at, len.div_ceil(64) * 64);
    expect_err(&b);
    wr_u64(&mut b, e.offset_at, u64::MAX - 63);
    expect_err(&b);
}

#[test]
fn overlapping_tensors() {
    let tensors = vec![
        (decl("a", QuantType::F32, &[32]), fill(128, 1)),
        (decl("b", QuantType::F32, &[32]), fill(128, 2)),
    ];
    let mut b = write_to_vec(&[], &tensors).unwrap();
    let (ea, eb) = (entry(&b, "a"), entry(&b, "b"));
    let a_off = rd_u64(&b, ea.offset_at);
    assert_eq!(rd_u64(&b, eb.offset_at), a_off + 128);
    // b starts 64 bytes into a.
    wr_u64(&mut b, eb.offset_at, a_off + 64);
    assert!(
        matches!(expect_err(&b), FormatError::Overlap { first, second } if first == "a" && second == "b")
    );
    // a starts inside b though b comes later in the directory: reported in offset order.
    wr_u64(&mut b, ea.offset_at, a_off + 64);
    wr_u64(&mut b, eb.offset_at, a_off);
    assert!(matches!(expect_err(&b), FormatError::Overlap { first, .. } if first == "b"));
}

#[test]
fn shape_overflow_and_block_misfit() {
    let mut b = sample_file();
    let e = entry(&b, "emb");
    wr_u64(&mut b, e.dims_at, u64::MAX);
    assert!(matches!(expect_err(&b), FormatError::BadShape { tensor, .. } if tensor == "emb"));
    // Product overflows though each dimension alone is modest.
    let mut b = sample_file();
    wr_u64(&mut b, e.dims_at, 1 << 62);
    wr_u64(&mut b, e.dims_at + 8, 1 << 4);
    assert!(matches!(expect_err(&b), FormatError::BadShape { .. }));
    // A q8_0 row that is not a whole number of blocks.
    let mut b = sample_file();
    let q = entry(&b, "q8");
    wr_u64(&mut b, q.dims_at + 8, 33);
    assert!(matches!(expect_err(&b), FormatError::BadShape { tensor, .. } if tensor == "q8"));
    // Too many dimensions.
    let mut b = sample_file();
    wr_u32(&mut b, e.n_dims_at, 9);
    assert!(matches!(expect_err(&b), FormatError::BadShape { .. }));
    wr_u32(&mut b, e.n_dims_at, u32::MAX);
    assert!(matches!(expect_err(&b), FormatError::BadShape { .. }));
}

#[test]
fn len_bytes_disagreeing_with_shape() {
    let mut b = sample_file();
    let e = entry(&b, "blk.0.wq");
    let len = rd_u64(&b, e.len_at);
    wr_u64(&mut b, e.len_at, len - 4);
    assert!(matches!(expect_err(&b), FormatError::BadShape { tensor, .. } if tensor == "blk.0.wq"));
    wr_u64(&mut b, e.len_at, len + 4);
    assert!(matches!(expect_err(&b), FormatError::BadShape { .. }));
}

#[test]
fn duplicate_tensor_names_and_keys() {
    let tensors = vec![
        (decl("w1", QuantType::F32, &[1]), fill(4, 0)),
        (decl("w2", QuantType::F32, &[1]), fill(4, 1)),
    ];
    let mut b = write_to_vec(&[], &tensors).unwrap();
    let e = entry(&b, "w2");
    b[e.name_at + 1] = b'1';
    assert!(
        matches!(expect_err(&b), FormatError::Invalid { what, .. } if what.contains("duplicate tensor"))
    );

    let meta = vec![
        ("k1".into(), MetaValue::U32(1)),
        ("k2".into(), MetaValue::U32(2)),
    ];
    let mut b = write_to_vec(&meta, &[]).unwrap();
    let at = find(&b, b"k2");
    b[at + 1] = b'1';
    assert!(
        matches!(expect_err(&b), FormatError::Invalid { what, .. } if what.contains("duplicate metadata"))
    );
}

#[test]
fn bad_utf8_in_key_tensor_name_and_string_values() {
    let meta = vec![
        ("key".into(), MetaValue::Str("value".into())),
        ("arr".into(), MetaValue::ArrStr(vec!["elem".into()])),
    ];
    let tensors = vec![(decl("tname", QuantType::F32, &[1]), fill(4, 0))];
    let good = write_to_vec(&meta, &tensors).unwrap();
    for needle in [&b"key"[..], b"value", b"elem", b"tname"] {
        let mut b = good.clone();
        let at = find(&b, needle);
        b[at + 1] = 0xFF;
        match expect_err(&b) {
            FormatError::Invalid { what, .. } => assert!(what.contains("UTF-8"), "{what}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn absurd_counts() {
    let meta = vec![
        ("u".into(), MetaValue::ArrU32(vec![1, 2])),
        ("s".into(), MetaValue::ArrStr(vec!["x".into()])),
        ("f".into(), MetaValue::ArrF32(vec![1.0])),
    ];
    let good = write_to_vec(&meta, &sample_tensors()).unwrap();
    // Array element counts (the u64 after key "u"/"s"/"f" and the tag).
    for key in [
        &b"\x01\x00\x00\x00u"[..],
        b"\x01\x00\x00\x00s",
        b"\x01\x00\x00\x00f",
    ] {
        for n in [u64::MAX, u64::MAX / 4 + 1, 1 << 40, 1000] {
            let mut b = good.clone();
            let at = find(&b, key) + 5 + 4;
            wr_u64(&mut b, at, n);
            assert!(
                matches!(expect_err(&b), FormatError::Invalid { .. }),
                "count {n}"
            );
        }
    }
    // Header counts.
    for (field, n) in [(16, u64::MAX), (16, 1 << 40), (24, u64::MAX), (24, 1 << 40)] {
        let mut b = good.clone();
        wr_u64(&mut b, field, n);
        assert!(
            matches!(expect_err(&b), FormatError::Invalid { .. }),
            "field {field}"
        );
    }
    // String lengths beyond the section.
    let mut b = good.clone();
    wr_u32(&mut b, 64, u32::MAX);
    expect_err(&b);
}

#[test]
fn section_offsets_are_checked() {
    let good = sample_file();
    for (field, v) in [
        (32, 0u64),
        (32, 65),
        (40, 63),
        (40, u64::MAX),
        (48, 1),
        (48, u64::MAX),
        (48, good.len() as u64 + 64),
    ] {
        let mut b = good.clone();
        wr_u64(&mut b, field, v);
        expect_err(&b);
    }
    // Unused bytes between metadata and directory.
    let mut b = good.clone();
    let n_meta = rd_u64(&b, 16);
    wr_u64(&mut b, 16, n_meta - 1);
    expect_err(&b);
}

#[test]
fn checksum_mismatch_names_the_tensor() {
    let mut b = sample_file();
    let f = DlmFile::parse(&b).unwrap();
    let info = f.tensor("emb").unwrap().clone();
    b[info.offset as usize + 3] ^= 0x10;
    let f = DlmFile::parse(&b).expect("checksums are not checked by parse");
    match f.verify_checksums(&b) {
        Err(FormatError::Checksum { tensor }) => assert_eq!(tensor, "emb"),
        other => panic!("{other:?}"),
    }
    assert!(f.verify_tensor(&b, f.tensor("norm").unwrap()).is_ok());
    // A corrupted stored checksum is caught too.
    let mut b = sample_file();
    let e = entry(&b, "scalar");
    b[e.checksum_at] ^= 1;
    let f = DlmFile::parse(&b).unwrap();
    assert!(
        matches!(f.verify_checksums(&b), Err(FormatError::Checksum { tensor }) if tensor == "scalar")
    );
}

#[test]
fn errors_display_their_fields() {
    let mut b = sample_file();
    let e = entry(&b, "emb");
    let off = rd_u64(&b, e.offset_at);
    wr_u64(&mut b, e.offset_at, off + 4);
    let msg = expect_err(&b).to_string();
    assert!(msg.contains("emb") && msg.contains("64"), "{msg}");
}
