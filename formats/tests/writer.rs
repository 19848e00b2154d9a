//! The file writer: same bytes as `write_to_vec`, atomic rename, cleanup when interrupted,
//! and rejection of bad requests; plus mapping the written file.

mod common;

use common::*;
use dlm_formats::{
    DlmFile, DlmWriter, FormatError, MappedFile, MetaValue, QuantType, as_f32_slice, write_to_vec,
};
use std::path::{Path, PathBuf};

/// A fresh empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-formats-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The temporary files beside `path` (named `.<name>.<pid>.<unique>.tmp`).
fn temps_of(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!(".{name}.")) && n.ends_with(".tmp")
        })
        .collect()
}

fn has_temp(path: &Path) -> bool {
    !temps_of(path).is_empty()
}

fn decls(t: &[(dlm_formats::TensorDecl, Vec<u8>)]) -> Vec<dlm_formats::TensorDecl> {
    t.iter().map(|(d, _)| d.clone()).collect()
}

#[test]
fn file_writer_matches_write_to_vec_and_maps() {
    let dir = scratch("match");
    let path = dir.join("model.dlm");
    let (meta, tensors) = (sample_meta(), sample_tensors());
    let mut w = DlmWriter::create(&path, &meta, &decls(&tensors)).unwrap();
    assert!(has_temp(&path) && !path.exists());
    assert_eq!(w.next_tensor(), Some("blk.0.wq"));
    for (d, data) in &tensors {
        w.write_tensor(&d.name, data).unwrap();
    }
    assert_eq!(w.next_tensor(), None);
    let planned = w.file_bytes();
    let size = w.finish().unwrap();
    assert_eq!(size, planned);
    assert!(!has_temp(&path));
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk, write_to_vec(&meta, &tensors).unwrap());
    assert_eq!(on_disk.len() as u64, size);

    let (map, f) = DlmFile::open_mapped(&path).unwrap();
    f.verify_checksums(map.bytes()).unwrap();
    let info = f.tensor("blk.0.wq").unwrap();
    // The map is page aligned and the tensor 64-byte aligned: f32 straight from the map.
    let w = as_f32_slice(f.tensor_bytes(map.bytes(), info));
    if cfg!(target_endian = "little") {
        let w = w.expect("aligned f32 view");
        assert_eq!(w.len(), 15);
        assert_eq!(w[5], 5.0 * 0.25 - 1.0);
    }
    // Shareable across threads.
    let shared = std::sync::Arc::new(map.clone());
    let len = std::thread::spawn(move || shared.bytes().len())
        .join()
        .unwrap();
    assert_eq!(len as u64, size);
    assert_eq!(map.len() as u64, size);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = scratch("drop");
    let path = dir.join("m.dlm");
    let tensors = sample_tensors();
    {
        let mut w = DlmWriter::create(&path, &sample_meta(), &decls(&tensors)).unwrap();
        w.write_tensor(&tensors[0].0.name, &tensors[0].1).unwrap();
        assert!(has_temp(&path));
    }
    assert!(!path.exists() && !has_temp(&path));
    // finish() with a tensor never written fails and also cleans up.
    let mut w = DlmWriter::create(&path, &[], &decls(&tensors)).unwrap();
    w.write_tensor(&tensors[0].0.name, &tensors[0].1).unwrap();
    assert!(
        matches!(w.finish(), Err(FormatError::Invalid { what, .. }) if what.contains("never written"))
    );
    assert!(!path.exists() && !has_temp(&path));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_order_length_or_extra_tensor_is_rejected() {
    let dir = scratch("order");
    let path = dir.join("m.dlm");
    let tensors = sample_tensors();
    let mut w = DlmWriter::create(&path, &[], &decls(&tensors)).unwrap();
    // Out of order.
    assert!(w.write_tensor(&tensors[1].0.name, &tensors[1].1).is_err());
    assert!(w.write_tensor("unknown", &tensors[0].1).is_err());
    // Wrong lengths.
    let d0 = &tensors[0].1;
    assert!(
        w.write_tensor(&tensors[0].0.name, &d0[..d0.len() - 1])
            .is_err()
    );
    assert!(
        w.write_tensor(&tensors[0].0.name, &[d0.as_slice(), &[0]].concat())
            .is_err()
    );
    // The writer is still usable after rejected calls.
    for (d, data) in &tensors {
        w.write_tensor(&d.name, data).unwrap();
    }
    assert!(w.write_tensor("extra", &[]).is_err());
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    DlmFile::parse(&bytes)
        .unwrap()
        .verify_checksums(&bytes)
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_requests_are_rejected_before_any_file_exists() {
    let dir = scratch("bad");
    let path = dir.join("m.dlm");
    let d = |name: &str, q, shape: &[u64]| decl(name, q, shape);
    let bad_tensors = [
        vec![d("a", QuantType::F32, &[1]), d("a", QuantType::F32, &[2])],
        vec![d("", QuantType::F32, &[1])],
        vec![d("q", QuantType::Q4_0, &[31])],
        vec![d("big", QuantType::F32, &[u64::MAX, 2])],
        vec![d("dims", QuantType::F32, &[1; 9])],
    ];
    for t in &bad_tensors {
        assert!(DlmWriter::create(&path, &[], t).is_err(), "{t:?}");
    }
    let dup_keys = vec![
        ("k".to_string(), MetaValue::U32(1)),
        ("k".to_string(), MetaValue::U32(2)),
    ];
    assert!(DlmWriter::create(&path, &dup_keys, &[]).is_err());
    assert!(DlmWriter::create(&path, &[(String::new(), MetaValue::U32(1))], &[]).is_err());
    assert!(matches!(
        DlmWriter::create(&path, &[], &bad_tensors[2]),
        Err(FormatError::BadShape { tensor, .. }) if tensor == "q"
    ));
    assert!(write_to_vec(&dup_keys, &[]).is_err());
    assert!(
        write_to_vec(&[], &[(d("x", QuantType::F32, &[2]), vec![0; 7])]).is_err(),
        "wrong length"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // A directory path with no file name.
    assert!(DlmWriter::create(Path::new("/"), &[], &[]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finishing_replaces_an_existing_file_atomically() {
    let dir = scratch("replace");
    let path = dir.join("m.dlm");
    std::fs::write(&path, b"old").unwrap();
    let w = DlmWriter::create(&path, &[], &[]).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"old",
        "old file untouched until finish"
    );
    w.finish().unwrap();
    DlmFile::parse(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mapping_missing_or_empty_files() {
    let dir = scratch("map");
    assert!(matches!(
        MappedFile::open(dir.join("absent")),
        Err(FormatError::Io(_))
    ));
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let m = MappedFile::open(&empty).unwrap();
    assert!(m.is_empty());
    assert!(DlmFile::open_mapped(&empty).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_symlink_planted_at_the_old_temporary_name_is_not_followed() {
    let dir = scratch("symlink");
    let path = dir.join("m.dlm");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("m.dlm.tmp")).unwrap();
    let tensors = sample_tensors();
    let mut w = DlmWriter::create(&path, &sample_meta(), &decls(&tensors)).unwrap();
    for (d, data) in &tensors {
        w.write_tensor(&d.name, data).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let (map, f) = DlmFile::open_mapped(&path).unwrap();
    f.verify_checksums(map.bytes()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_writers_of_one_path_publish_a_complete_file() {
    let dir = scratch("concurrent");
    let path = dir.join("m.dlm");
    let tensors = sample_tensors();
    let meta = sample_meta();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut w = DlmWriter::create(&path, &meta, &decls(&tensors)).unwrap();
                for (d, data) in &tensors {
                    w.write_tensor(&d.name, data).unwrap();
                }
                w.finish().unwrap();
            });
        }
    });
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk, write_to_vec(&meta, &tensors).unwrap());
    assert!(!has_temp(&path));
    std::fs::remove_dir_all(&dir).unwrap();
}
