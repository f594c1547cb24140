//! Reading and writing the [safetensors](https://github.com/huggingface/safetensors) format, by
//! hand (no dependency), so that a checkpoint opens in Python with
//! `safetensors.torch.load_file`.
//!
//! Layout: an 8-byte little-endian header length `n`; `n` bytes of UTF-8 JSON
//! `{"__metadata__": {string: string}, "name": {"dtype": "F32", "shape": [2, 3],
//! "data_offsets": [begin, end]}, …}` (padded with spaces so the data starts 8-byte aligned);
//! then the data section, each tensor row-major little-endian at `[begin, end)` relative to the
//! section's start. The writer sorts tensors by name and packs them without gaps; the reader
//! enforces what the reference implementation does: offsets inside the file, sizes that match
//! dtype × shape, and a data section covered exactly, without holes or overlaps.

use super::json::{self, Kind, Value};
use crate::error::{Error, Result};
use crate::tensor::{DType, Float, Tensor};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tensors with their names, as a file holds them.
pub type NamedTensors<T> = Vec<(String, Tensor<T>)>;

/// A file's `__metadata__`: free-form string pairs.
pub type Metadata = BTreeMap<String, String>;

/// The reference implementation's cap on the header size; larger values mean a corrupt file.
const MAX_HEADER: u64 = 100_000_000;

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F64 => "F64",
    }
}

/// Writes `tensors` (any order; names must be unique and not `__metadata__`) and string
/// `metadata` to `path` atomically: a crash leaves either the old file or the new one.
pub fn save_safetensors<T: Float>(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor<T>)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut sorted: Vec<&(String, Tensor<T>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for pair in sorted.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(Error::invalid(
                "save_safetensors",
                format!("tensor name `{}` appears twice", pair[0].0),
            ));
        }
    }
    if sorted.iter().any(|(name, _)| name == "__metadata__") {
        return Err(Error::invalid(
            "save_safetensors",
            "`__metadata__` is reserved and cannot name a tensor",
        ));
    }
    let size = match T::DTYPE {
        DType::F32 => 4,
        DType::F64 => 8,
    };
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            json::write_string(&mut header, k);
            header.push(':');
            json::write_string(&mut header, v);
        }
        header.push('}');
    }
    let mut offset = 0usize;
    for (i, (name, t)) in sorted.iter().enumerate() {
        if i > 0 || !metadata.is_empty() {
            header.push(',');
        }
        json::write_string(&mut header, name);
        let dims: Vec<String> = t.dims().iter().map(|d| d.to_string()).collect();
        let end = offset + t.numel() * size;
        header.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            dtype_name(T::DTYPE),
            dims.join(",")
        ));
        offset = end;
    }
    header.push('}');
    // Pad so that the data section starts on an 8-byte boundary, as the reference writer does.
    while (8 + header.len()) % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for (_, t) in &sorted {
        for v in t.data() {
            match T::DTYPE {
                DType::F32 => bytes.extend_from_slice(&(v.to_f64() as f32).to_le_bytes()),
                DType::F64 => bytes.extend_from_slice(&v.to_f64().to_le_bytes()),
            }
        }
    }
    write_atomic(path, &bytes)
}

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk and renames it over
/// `path`, so that readers never see a half-written file.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = path.as_ref();
    let io = |p: &Path, e: std::io::Error| Error::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let name = path.file_name().ok_or_else(|| Error::Io {
        path: path.display().to_string(),
        message: "not a file path".into(),
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    // Make the rename itself durable where the platform allows opening a directory.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a safetensors file: the tensors sorted by name, converted to `T` (F32 and F64 files
/// load as either), and the `__metadata__` map. A corrupt or truncated file gives
/// [`Error::Data`] with the file name and the byte offset of the problem.
pub fn load_safetensors<T: Float>(path: impl AsRef<Path>) -> Result<(NamedTensors<T>, Metadata)> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    decode(&bytes, &path.display().to_string())
}

/// One tensor's header entry, validated against the data section.
struct Entry {
    name: String,
    dtype: DType,
    dims: Vec<usize>,
    begin: usize,
    end: usize,
    /// Offset of the entry in the file, for error messages.
    at: u64,
}

fn decode<T: Float>(bytes: &[u8], file: &str) -> Result<(NamedTensors<T>, Metadata)> {
    let fail = |at: u64, message: String| Error::Data {
        file: file.to_string(),
        at,
        message,
    };
    let len = bytes.len() as u64;
    let Some(prefix) = bytes.get(..8) else {
        return Err(fail(
            len,
            format!("file of {len} bytes is too short for the 8-byte header length"),
        ));
    };
    let mut n_bytes = [0u8; 8];
    n_bytes.copy_from_slice(prefix);
    let n = u64::from_le_bytes(n_bytes);
    if n > MAX_HEADER || n > len - 8 {
        return Err(fail(
            8,
            format!(
                "header length {n} exceeds the file's remaining {} bytes",
                len - 8
            ),
        ));
    }
    let data_start = 8 + n as usize;
    let header = &bytes[8..data_start];
    let root = json::parse(header)
        .map_err(|e| fail(8 + e.at as u64, format!("bad header JSON: {}", e.message)))?;
    let at = |v: &Value| 8 + v.at as u64;
    let Kind::Object(members) = root.kind else {
        return Err(fail(at(&root), "the header is not a JSON object".into()));
    };
    let data = &bytes[data_start..];
    let mut metadata = BTreeMap::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in members {
        if !seen.insert(name.clone()) {
            return Err(fail(
                at(&value),
                format!("`{name}` appears twice in the header"),
            ));
        }
        if name == "__metadata__" {
            let Kind::Object(pairs) = value.kind else {
                return Err(fail(at(&value), "`__metadata__` is not an object".into()));
            };
            for (k, v) in pairs {
                let Kind::String(s) = v.kind else {
                    return Err(fail(at(&v), format!("metadata `{k}` is not a string")));
                };
                metadata.insert(k, s);
            }
        } else {
            entries.push(entry(name, &value, data.len(), file)?);
        }
    }
    // The data section must be covered exactly: sorted by offset, each tensor starts where the
    // previous one ended and the last ends at the end of the file.
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by_key(|e| (e.begin, e.end));
    let mut covered = 0usize;
    for e in order {
        if e.begin != covered {
            return Err(fail(
                data_start as u64 + e.begin as u64,
                format!(
                    "tensor `{}` starts at data offset {}, expected {covered} (gap or overlap)",
                    e.name, e.begin
                ),
            ));
        }
        covered = e.end;
    }
    if covered != data.len() {
        return Err(fail(
            (data_start + covered) as u64,
            format!(
                "{} bytes of data follow the last tensor",
                data.len() - covered
            ),
        ));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let raw = &data[e.begin..e.end];
        let values: Vec<T> = match e.dtype {
            DType::F32 => raw
                .chunks_exact(4)
                .map(|c| T::from_f64(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
                .collect(),
            DType::F64 => raw
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    T::from_f64(f64::from_le_bytes(b))
                })
                .collect(),
        };
        let t = Tensor::from_vec(values, e.dims)
            .map_err(|err| fail(e.at, format!("tensor `{}`: {err}", e.name)))?;
        out.push((e.name, t));
    }
    Ok((out, metadata))
}

/// Validates one `{"dtype", "shape", "data_offsets"}` entry against a data section of
/// `data_len` bytes.
fn entry(name: String, value: &Value, data_len: usize, file: &str) -> Result<Entry> {
    let at = |v: &Value| 8 + v.at as u64;
    let fail = |v: &Value, message: String| Error::Data {
        file: file.to_string(),
        at: at(v),
        message: format!("tensor `{name}`: {message}"),
    };
    let Kind::Object(fields) = &value.kind else {
        return Err(fail(value, "entry is not an object".into()));
    };
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| fail(value, format!("entry has no `{key}`")))
    };
    let dtype_v = field("dtype")?;
    let (dtype, size) = match &dtype_v.kind {
        Kind::String(s) if s == "F32" => (DType::F32, 4u64),
        Kind::String(s) if s == "F64" => (DType::F64, 8u64),
        Kind::String(s) => {
            return Err(fail(
                dtype_v,
                format!("unsupported dtype `{s}` (F32 and F64 are read)"),
            ));
        }
        _ => return Err(fail(dtype_v, "dtype is not a string".into())),
    };
    let shape_v = field("shape")?;
    let Kind::Array(items) = &shape_v.kind else {
        return Err(fail(shape_v, "shape is not an array".into()));
    };
    let mut dims = Vec::with_capacity(items.len());
    let mut numel: u64 = 1;
    for item in items {
        let d = item
            .as_u64()
            .ok_or_else(|| fail(item, "shape entries must be non-negative integers".into()))?;
        numel = numel
            .checked_mul(d)
            .ok_or_else(|| fail(shape_v, "shape overflows".into()))?;
        dims.push(d as usize);
    }
    let off_v = field("data_offsets")?;
    let offsets: Vec<u64> = match &off_v.kind {
        Kind::Array(items) => items.iter().map(Value::as_u64).collect::<Option<_>>(),
        _ => None,
    }
    .unwrap_or_default();
    let &[begin, end] = offsets.as_slice() else {
        return Err(fail(
            off_v,
            "data_offsets must be two non-negative integers".into(),
        ));
    };
    if begin > end || end > data_len as u64 {
        return Err(fail(
            off_v,
            format!("data_offsets [{begin}, {end}] lie outside the {data_len}-byte data section"),
        ));
    }
    let expected = numel.checked_mul(size);
    if expected != Some(end - begin) {
        return Err(fail(
            off_v,
            format!(
                "{} bytes for shape {dims:?} of {}, expected {numel} × {size}",
                end - begin,
                dtype_name(dtype)
            ),
        ));
    }
    Ok(Entry {
        name,
        dtype,
        dims,
        begin: begin as usize,
        end: end as usize,
        at: at(value),
    })
}
