//! Streaming writer: declares metadata and the tensor directory up front, then takes tensor data
//! in declared order, writes to a unique temporary file beside `path` (created exclusively, see
//! [`crate::TempFile`]) and renames it onto `path` only when finished and re-read: a file under
//! the final name is always complete and passes its checksums.

use crate::TempFile;
use crate::checksum::dlmh64;
use crate::layout::{self, header};
use crate::{FormatError, MetaValue, QuantType};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// A tensor to be written: name, type and shape; its bytes come later.
#[derive(Debug, Clone)]
pub struct TensorDecl {
    /// Tensor name.
    pub name: String,
    /// Storage type.
    pub quant: QuantType,
    /// Row-major shape; the last dimension is the row.
    pub shape: Vec<u64>,
}

/// Where everything goes, decided before any tensor byte is written.
#[derive(Debug)]
struct Plan {
    /// Bytes `[0, data_offset)`: header, metadata, directory (checksums zero), padding.
    head: Vec<u8>,
    /// Absolute offset of each tensor's checksum field in the directory.
    checksum_at: Vec<u64>,
    /// Absolute offset of each tensor's data.
    offsets: Vec<u64>,
    /// Byte length of each tensor's data.
    lens: Vec<u64>,
    /// Size of the finished file.
    file_bytes: u64,
}

/// A request fault (no file offset applies).
fn bad_request(what: String) -> FormatError {
    FormatError::Invalid { what, offset: 0 }
}

fn put_u32(buf: &mut Vec<u8>, x: u32) {
    buf.extend_from_slice(&x.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, x: u64) {
    buf.extend_from_slice(&x.to_le_bytes());
}

/// A u32-length-prefixed string.
fn put_str(buf: &mut Vec<u8>, s: &str, what: &str) -> Result<(), FormatError> {
    let len = u32::try_from(s.len())
        .map_err(|_| bad_request(format!("{what} of {} bytes is longer than 4 GiB", s.len())))?;
    put_u32(buf, len);
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_value(buf: &mut Vec<u8>, key: &str, v: &MetaValue) -> Result<(), FormatError> {
    put_u32(buf, layout::meta_tag(v));
    match v {
        MetaValue::U32(x) => put_u32(buf, *x),
        MetaValue::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => put_u64(buf, *x),
        MetaValue::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => buf.push(u8::from(*x)),
        MetaValue::Str(s) => put_str(buf, s, &format!("string value of {key:?}"))?,
        MetaValue::ArrU32(a) => {
            put_u64(buf, a.len() as u64);
            a.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        }
        MetaValue::ArrI32(a) => {
            put_u64(buf, a.len() as u64);
            a.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        }
        MetaValue::ArrF32(a) => {
            put_u64(buf, a.len() as u64);
            a.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        }
        MetaValue::ArrStr(a) => {
            put_u64(buf, a.len() as u64);
            for s in a {
                put_str(buf, s, &format!("string element of {key:?}"))?;
            }
        }
    }
    Ok(())
}

/// Validate the request and lay the file out.
fn plan(meta: &[(String, MetaValue)], tensors: &[TensorDecl]) -> Result<Plan, FormatError> {
    let align = u64::from(layout::DEFAULT_ALIGNMENT);
    let mut head = vec![0u8; layout::HEADER_BYTES as usize];

    let mut keys = HashSet::with_capacity(meta.len());
    for (key, value) in meta {
        if key.is_empty() {
            return Err(bad_request("empty metadata key".into()));
        }
        if !keys.insert(key.as_str()) {
            return Err(bad_request(format!("duplicate metadata key {key:?}")));
        }
        put_str(&mut head, key, "metadata key")?;
        put_value(&mut head, key, value)?;
    }
    let dir_off = head.len() as u64;

    let mut names = HashSet::with_capacity(tensors.len());
    let mut lens = Vec::with_capacity(tensors.len());
    let mut dir_bytes = 0u64;
    for t in tensors {
        if t.name.is_empty() {
            return Err(bad_request("empty tensor name".into()));
        }
        if !names.insert(t.name.as_str()) {
            return Err(bad_request(format!("duplicate tensor name {:?}", t.name)));
        }
        if t.shape.len() > layout::MAX_DIMS {
            return Err(FormatError::BadShape {
                tensor: t.name.clone(),
                reason: format!("{} dimensions, at most {}", t.shape.len(), layout::MAX_DIMS),
            });
        }
        let len = t
            .quant
            .tensor_bytes(&t.shape)
            .ok_or_else(|| FormatError::BadShape {
                tensor: t.name.clone(),
                reason: format!(
                    "shape {:?} overflows or its row is not a whole number of {} blocks",
                    t.shape, t.quant
                ),
            })?;
        lens.push(len);
        dir_bytes += 4 + t.name.len() as u64 + 4 + 4 + 8 * t.shape.len() as u64 + 24;
    }

    let too_big = || bad_request("the file would be larger than 2^64 bytes".into());
    let data_off = dir_off
        .checked_add(dir_bytes)
        .and_then(|e| layout::align_up(e, align));
    let data_off = data_off.ok_or_else(too_big)?;
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut end = data_off;
    for &len in &lens {
        let off = layout::align_up(end, align).ok_or_else(too_big)?;
        offsets.push(off);
        end = off.checked_add(len).ok_or_else(too_big)?;
    }
    let file_bytes = end;

    let mut checksum_at = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        put_str(&mut head, &t.name, "tensor name")?;
        put_u32(&mut head, t.quant.id());
        put_u32(&mut head, t.shape.len() as u32);
        t.shape.iter().for_each(|&d| put_u64(&mut head, d));
        put_u64(&mut head, offsets[i]);
        put_u64(&mut head, lens[i]);
        checksum_at.push(head.len() as u64);
        put_u64(&mut head, 0);
    }
    debug_assert_eq!(head.len() as u64, dir_off + dir_bytes);
    let data_off_usize = usize::try_from(data_off).map_err(|_| too_big())?;
    head.resize(data_off_usize, 0);

    head[..4].copy_from_slice(&layout::MAGIC);
    let mut set32 = |at: usize, x: u32| head[at..at + 4].copy_from_slice(&x.to_le_bytes());
    set32(header::VERSION, layout::VERSION);
    set32(header::ALIGNMENT, layout::DEFAULT_ALIGNMENT);
    set32(header::RESERVED, 0);
    let mut set64 = |at: usize, x: u64| head[at..at + 8].copy_from_slice(&x.to_le_bytes());
    set64(header::N_META, meta.len() as u64);
    set64(header::N_TENSORS, tensors.len() as u64);
    set64(header::META_OFFSET, layout::HEADER_BYTES);
    set64(header::DIR_OFFSET, dir_off);
    set64(header::DATA_OFFSET, data_off);
    set64(header::FILE_BYTES, file_bytes);

    Ok(Plan {
        head,
        checksum_at,
        offsets,
        lens,
        file_bytes,
    })
}

/// The whole file for `meta` and `tensors` (declaration and data) in memory; the same bytes
/// [`DlmWriter`] writes to disk.
pub fn write_to_vec(
    meta: &[(String, MetaValue)],
    tensors: &[(TensorDecl, Vec<u8>)],
) -> Result<Vec<u8>, FormatError> {
    let decls: Vec<TensorDecl> = tensors.iter().map(|(d, _)| d.clone()).collect();
    let plan = plan(meta, &decls)?;
    let mut out = plan.head;
    for (i, (decl, data)) in tensors.iter().enumerate() {
        check_len(decl, data, plan.lens[i])?;
        out.resize(plan.offsets[i] as usize, 0);
        out.extend_from_slice(data);
        let at = plan.checksum_at[i] as usize;
        out[at..at + 8].copy_from_slice(&dlmh64(data).to_le_bytes());
    }
    debug_assert_eq!(out.len() as u64, plan.file_bytes);
    Ok(out)
}

/// `data` must be exactly the declared size.
fn check_len(decl: &TensorDecl, data: &[u8], len: u64) -> Result<(), FormatError> {
    if data.len() as u64 != len {
        return Err(bad_request(format!(
            "tensor {:?}: got {} bytes, a {} tensor of shape {:?} takes {len}",
            decl.name,
            data.len(),
            decl.quant,
            decl.shape
        )));
    }
    Ok(())
}

/// Writes one `.dlm` file: [`DlmWriter::create`], [`DlmWriter::write_tensor`] once per tensor
/// in declared order, then [`DlmWriter::finish`]. Dropped unfinished, it removes its
/// temporary file and leaves nothing under the final name.
#[derive(Debug)]
pub struct DlmWriter {
    /// The open temporary file; `None` once finished or after a failed write.
    out: Option<BufWriter<File>>,
    /// The temporary name; removed when dropped unpublished.
    tmp: Option<TempFile>,
    decls: Vec<TensorDecl>,
    plan: Plan,
    /// Index of the next tensor to write.
    next: usize,
    /// Bytes written so far.
    pos: u64,
    checksums: Vec<u64>,
}

impl DlmWriter {
    /// Start writing `path` (through a unique temporary file beside it) with this metadata and
    /// directory.
    pub fn create(
        path: &Path,
        meta: &[(String, MetaValue)],
        tensors: &[TensorDecl],
    ) -> Result<Self, FormatError> {
        let plan = plan(meta, tensors)?;
        if path.file_name().is_none() {
            return Err(bad_request(format!(
                "output path {} has no file name",
                path.display()
            )));
        }
        let mut tmp = TempFile::beside(path)?;
        let file = tmp.take_file().ok_or_else(closed)?;
        let mut w = DlmWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp: Some(tmp),
            decls: tensors.to_vec(),
            pos: 0,
            next: 0,
            checksums: Vec::with_capacity(tensors.len()),
            plan,
        };
        let head = std::mem::take(&mut w.plan.head);
        w.write_all(&head)?;
        Ok(w)
    }

    /// The size the finished file will have.
    pub fn file_bytes(&self) -> u64 {
        self.plan.file_bytes
    }

    /// The name of the tensor `write_tensor` expects next, or `None` when all are written.
    pub fn next_tensor(&self) -> Option<&str> {
        self.decls.get(self.next).map(|d| d.name.as_str())
    }

    /// Write through the open file; an I/O error closes the writer and removes the file.
    fn write_all(&mut self, data: &[u8]) -> Result<(), FormatError> {
        let out = self.out.as_mut().ok_or_else(closed)?;
        if let Err(e) = out.write_all(data) {
            self.abandon();
            return Err(e.into());
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Close and remove the temporary file.
    fn abandon(&mut self) {
        self.out.take();
        // Dropping the temporary name removes the file.
        self.tmp.take();
    }

    /// Write the data of the next declared tensor, which must be `name`, of exactly its
    /// declared size.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<(), FormatError> {
        if self.out.is_none() {
            return Err(closed());
        }
        let Some(decl) = self.decls.get(self.next) else {
            return Err(bad_request(format!(
                "tensor {name:?} written after all {} declared tensors",
                self.decls.len()
            )));
        };
        if decl.name != name {
            return Err(bad_request(format!(
                "tensor {name:?} written where {:?} (number {} in declared order) is due",
                decl.name, self.next
            )));
        }
        check_len(decl, data, self.plan.lens[self.next])?;
        let pad = self.plan.offsets[self.next] - self.pos;
        const ZEROS: [u8; 4096] = [0; 4096];
        // The padding is less than the alignment, at most 1 MiB.
        let mut pad = pad as usize;
        while pad > 0 {
            let n = pad.min(ZEROS.len());
            self.write_all(&ZEROS[..n])?;
            pad -= n;
        }
        self.write_all(data)?;
        self.checksums.push(dlmh64(data));
        self.next += 1;
        Ok(())
    }

    /// Patch the checksums, flush, fsync, re-read the whole file (parse and every checksum)
    /// and only then rename onto the final path; the file's size.
    pub fn finish(mut self) -> Result<u64, FormatError> {
        if let Some(missing) = self.decls.get(self.next) {
            return Err(bad_request(format!(
                "tensor {:?} was declared but never written",
                missing.name
            )));
        }
        let out = self.out.take().ok_or_else(closed)?;
        let tmp = self.tmp.take().ok_or_else(closed)?;
        // On any error `tmp` is dropped, which removes the temporary file.
        self.commit(out, tmp).map(|()| self.plan.file_bytes)
    }

    fn commit(&self, out: BufWriter<File>, tmp: TempFile) -> Result<(), FormatError> {
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        for (&at, &sum) in self.plan.checksum_at.iter().zip(&self.checksums) {
            file.seek(SeekFrom::Start(at))?;
            file.write_all(&sum.to_le_bytes())?;
        }
        file.sync_all()?;
        // Publish only what reads back whole: a short write, a disk error or another process
        // writing the same temporary name (impossible with exclusive names, checked anyway)
        // shows up here, before the final name changes.
        let (map, parsed) = crate::DlmFile::open_mapped(tmp.path())?;
        if map.bytes().len() as u64 != self.plan.file_bytes {
            return Err(bad_request(format!(
                "{} reads back {} bytes, {} were written",
                tmp.path().display(),
                map.bytes().len(),
                self.plan.file_bytes
            )));
        }
        parsed.verify_checksums(map.bytes())?;
        drop(map);
        tmp.persist_file(file)?;
        Ok(())
    }
}

/// The error for a call on a writer that is finished or failed.
fn closed() -> FormatError {
    bad_request("the writer is closed after an earlier I/O error".into())
}

impl Drop for DlmWriter {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, quant: QuantType, shape: &[u64]) -> TensorDecl {
        TensorDecl {
            name: name.into(),
            quant,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn plan_aligns_every_tensor_and_fills_the_header() {
        let meta = [("k".to_string(), MetaValue::Str("v".into()))];
        let t = [
            d("a", QuantType::F32, &[3]),
            d("bb", QuantType::F16, &[5]),
            d("c", QuantType::Q8_0, &[32]),
        ];
        let p = plan(&meta, &t).unwrap();
        let data_off = p.head.len() as u64;
        assert_eq!(data_off % 64, 0);
        assert_eq!(p.offsets, [data_off, data_off + 64, data_off + 128]);
        assert_eq!(p.lens, [12, 10, 34]);
        assert_eq!(p.file_bytes, data_off + 128 + 34);
        let rd = |at: usize| u64::from_le_bytes(p.head[at..at + 8].try_into().unwrap());
        assert_eq!(&p.head[..4], b"DLM\0");
        assert_eq!((rd(header::N_META), rd(header::N_TENSORS)), (1, 3));
        assert_eq!(rd(header::META_OFFSET), 64);
        // Metadata: 4 + 1 (key) + 4 (tag) + 4 + 1 (value).
        assert_eq!(rd(header::DIR_OFFSET), 64 + 14);
        assert_eq!(rd(header::DATA_OFFSET), data_off);
        assert_eq!(rd(header::FILE_BYTES), p.file_bytes);
        // The checksum field is the last 8 bytes of each entry, the next entry follows.
        assert_eq!(p.checksum_at[1] - p.checksum_at[0], 4 + 2 + 4 + 4 + 8 + 24);
    }

    #[test]
    fn requests_are_validated() {
        assert!(plan(&[], &[d("a", QuantType::Q4K, &[255])]).is_err());
        assert!(
            plan(
                &[],
                &[d("a", QuantType::F32, &[1]), d("a", QuantType::F32, &[1])]
            )
            .is_err()
        );
        assert!(plan(&[], &[d("", QuantType::F32, &[1])]).is_err());
        let dup = [
            ("k".to_string(), MetaValue::U32(1)),
            ("k".to_string(), MetaValue::Bool(true)),
        ];
        assert!(plan(&dup, &[]).is_err());
    }
}
