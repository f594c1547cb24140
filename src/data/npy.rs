//! NumPy `.npy` files: a strict reader and a writer for little-endian, C-order arrays of `f64`,
//! `f32`, `i64` and `i32`.
//!
//! The format: the magic `\x93NUMPY`, a version byte pair (1.0, 2.0 or 3.0), the header length
//! (`u16` in version 1, `u32` after), then an ASCII Python dict literal such as
//! `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces to a
//! multiple of 64 bytes and ended by a newline, then the raw values. Users bring their own
//! features this way, and the `loss` oracle exchanges arrays with NumPy through it, so the
//! reader accepts exactly that and rejects everything else with the byte offset of the problem:
//! a malformed header, `fortran_order: True`, a big-endian or unsupported type (`'>f8'`,
//! `'<f2'`), or data shorter or longer than the shape says.

use super::{Dataset, corrupt};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The values of an array, in the element type of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
}

/// An array read from a `.npy` file: its shape (empty for a scalar) and values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl NpyArray {
    /// The number of values.
    pub fn len(&self) -> usize {
        match &self.data {
            NpyData::F64(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::I32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as `f64` (exact for every type except `i64` beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            NpyData::F64(v) => v.clone(),
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        }
    }
    /// The values as `f32` (rounded).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            _ => self.to_f64_vec().into_iter().map(|x| x as f32).collect(),
        }
    }
    /// The array as a tensor of the same shape.
    pub fn to_tensor<T: Float>(&self) -> Result<Tensor<T>> {
        let values = self.to_f64_vec().into_iter().map(T::from_f64).collect();
        Tensor::from_vec(values, self.shape.clone())
    }
    /// Integer values as class labels; fails for a float array or a negative value.
    pub fn to_labels(&self) -> Result<Vec<usize>> {
        let ints: Vec<i64> = match &self.data {
            NpyData::I64(v) => v.clone(),
            NpyData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => {
                return Err(Error::invalid(
                    "npy::to_labels",
                    "labels must be an integer array",
                ));
            }
        };
        ints.into_iter()
            .map(|x| {
                usize::try_from(x)
                    .map_err(|_| Error::invalid("npy::to_labels", format!("negative label {x}")))
            })
            .collect()
    }
}

/// An element type that `.npy` files in this crate can hold.
pub trait NpyElement: Copy {
    /// The dtype descriptor, e.g. `<f8`.
    const DESCR: &'static str;
    fn write_le(self, out: &mut Vec<u8>);
}

macro_rules! npy_element {
    ($t:ty, $descr:expr) => {
        impl NpyElement for $t {
            const DESCR: &'static str = $descr;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
npy_element!(f64, "<f8");
npy_element!(f32, "<f4");
npy_element!(i64, "<i8");
npy_element!(i32, "<i4");

/// Reads a `.npy` file.
pub fn read(path: impl AsRef<Path>) -> Result<NpyArray> {
    read_located(path.as_ref()).map(|(array, _)| array)
}

/// Parses the bytes of a `.npy` file; `name` is used in errors.
pub fn parse(bytes: &[u8], name: &str) -> Result<NpyArray> {
    parse_located(bytes, name).map(|(array, _)| array)
}

/// Where the parts of a parsed `.npy` file lie, for errors about its contents.
struct Layout {
    /// The byte offset of the `descr` value (its opening quote).
    descr_at: usize,
    /// The byte offset of the `shape` value (its opening parenthesis).
    shape_at: usize,
    /// The byte offset of the first value.
    data_start: usize,
    /// The size of one value in bytes.
    item_size: usize,
}

/// Reads a `.npy` file and where its parts lie.
fn read_located(path: &Path) -> Result<(NpyArray, Layout)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_located(&bytes, &path.display().to_string())
}

/// [`parse`], also returning where the header's values and the data lie.
fn parse_located(bytes: &[u8], name: &str) -> Result<(NpyArray, Layout)> {
    let err = |at: usize, message: String| corrupt(name, false, at, message);
    if !bytes.starts_with(MAGIC) {
        return Err(err(
            0,
            "not a .npy file (missing the \\x93NUMPY magic string)".into(),
        ));
    }
    if bytes.len() < 8 {
        return Err(err(
            bytes.len(),
            "truncated .npy preamble: the version bytes are missing".into(),
        ));
    }
    let (len_bytes, start) = match bytes[6] {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => {
            return Err(err(
                6,
                format!("unsupported .npy format version {v}.{}", bytes[7]),
            ));
        }
    };
    if bytes.len() < start {
        return Err(err(bytes.len(), "truncated header length".into()));
    }
    let header_len = bytes[8..8 + len_bytes]
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let header = bytes.get(start..start + header_len).ok_or_else(|| {
        err(
            bytes.len(),
            format!("truncated header: {header_len} bytes promised"),
        )
    })?;
    let h = header::parse(header).map_err(|(at, msg)| err(start + at, msg))?;
    let (descr, shape) = (h.descr, h.shape);
    let (descr_at, shape_at) = (start + h.descr_at, start + h.shape_at);
    let data_start = start + header_len;
    let size = match descr.as_str() {
        "<f8" | "<i8" => 8,
        "<f4" | "<i4" => 4,
        other => {
            let why = match other.strip_prefix('>') {
                Some(t) => format!(" (big-endian data is not supported: save a.astype('<{t}'))"),
                None => String::new(),
            };
            let msg =
                format!("unsupported dtype {other:?}{why} (supported: '<f8', '<f4', '<i8', '<i4')");
            return Err(err(descr_at, msg));
        }
    };
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|n| n.checked_mul(size).is_some())
        .ok_or_else(|| err(shape_at, format!("shape {shape:?} is too large")))?;
    let body = &bytes[data_start..];
    if body.len() != count * size {
        let what = if body.len() < count * size {
            "truncated data"
        } else {
            "trailing bytes"
        };
        let msg = format!(
            "{what}: shape {shape:?} of {descr} needs {} bytes after the header, found {}",
            count * size,
            body.len()
        );
        return Err(err(data_start + body.len().min(count * size), msg));
    }
    let data = match descr.as_str() {
        "<f8" => NpyData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes(arr(c)))
                .collect(),
        ),
        "<i8" => NpyData::I64(
            body.chunks_exact(8)
                .map(|c| i64::from_le_bytes(arr(c)))
                .collect(),
        ),
        "<f4" => NpyData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes(arr(c)))
                .collect(),
        ),
        _ => NpyData::I32(
            body.chunks_exact(4)
                .map(|c| i32::from_le_bytes(arr(c)))
                .collect(),
        ),
    };
    let layout = Layout {
        descr_at,
        shape_at,
        data_start,
        item_size: size,
    };
    Ok((NpyArray { shape, data }, layout))
}

/// A fixed-size array from a slice whose length `chunks_exact` guarantees.
fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

/// The bytes of a `.npy` file (version 1.0, or 2.0 for a header over 64 KiB) holding `data` with
/// `shape`.
pub fn to_bytes<E: NpyElement>(shape: &[usize], data: &[E]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        let msg = format!("shape {shape:?} does not hold {} values", data.len());
        return Err(Error::invalid("npy::write", msg));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        E::DESCR
    );
    // Pad so that the data starts on a 64-byte boundary, as NumPy does.
    let pad = |prefix: usize| (64 - (prefix + header.len() + 1) % 64) % 64;
    let v1 = header.len() + pad(10) < usize::from(u16::MAX);
    let pad = if v1 { pad(10) } else { pad(12) };
    let prefix = if v1 { 10 } else { 12 };
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let mut out = Vec::with_capacity(prefix + header.len() + data.len() * 8);
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    data.iter().for_each(|&v| v.write_le(&mut out));
    Ok(out)
}

/// Writes `data` with `shape` to a `.npy` file.
pub fn write<E: NpyElement>(path: impl AsRef<Path>, shape: &[usize], data: &[E]) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, to_bytes(shape, data)?).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Writes an `f64` array (`<f8`).
pub fn write_f64(path: impl AsRef<Path>, shape: &[usize], data: &[f64]) -> Result<()> {
    write(path, shape, data)
}
/// Writes an `f32` array (`<f4`).
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    write(path, shape, data)
}
/// Writes an `i64` array (`<i8`).
pub fn write_i64(path: impl AsRef<Path>, shape: &[usize], data: &[i64]) -> Result<()> {
    write(path, shape, data)
}

/// The most classes a labels file may number (2²⁴).
pub const MAX_CLASSES: usize = 1 << 24;

/// A dataset from a features file `(N, ...)` (any supported type, stored as `f32`, not
/// rescaled) and a labels file `(N,)` of non-negative integers (`<i8` or `<i4`);
/// `num_classes = max label + 1`. Features of rank 0 or 1 are rejected (a vector of `N` scalars
/// must be saved as `(N, 1)`), as are items with a zero dimension. Every problem with either
/// file is an [`Error::Data`] naming the file and the byte offset of the header value or the
/// label at fault.
pub fn load_npy_dataset(features: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset> {
    let (fpath, lpath) = (features.as_ref(), labels.as_ref());
    let (fname, lname) = (fpath.display().to_string(), lpath.display().to_string());
    let (x, xl) = read_located(fpath)?;
    let (y, yl) = read_located(lpath)?;
    if x.shape.len() < 2 {
        let msg = format!(
            "features must have shape (N, ...) with at least 2 dimensions, got {:?} \
             (save N scalars as (N, 1))",
            x.shape
        );
        return Err(corrupt(&fname, false, xl.shape_at, msg));
    }
    if x.shape[1..].contains(&0) {
        let msg = format!(
            "features of shape {:?} have empty items (a zero dimension after the first)",
            x.shape
        );
        return Err(corrupt(&fname, false, xl.shape_at, msg));
    }
    if y.shape.len() != 1 || y.shape[0] != x.shape[0] {
        let msg = format!(
            "labels must have shape ({},) to match the {} rows of {fname}, got {:?}",
            x.shape[0], x.shape[0], y.shape
        );
        return Err(corrupt(&lname, false, yl.shape_at, msg));
    }
    let ints: Vec<i64> = match &y.data {
        NpyData::I64(v) => v.clone(),
        NpyData::I32(v) => v.iter().map(|&l| i64::from(l)).collect(),
        NpyData::F64(_) | NpyData::F32(_) => {
            let msg = "labels must be an integer array ('<i8' or '<i4'), got a float dtype";
            return Err(corrupt(&lname, false, yl.descr_at, msg));
        }
    };
    let mut labels = Vec::with_capacity(ints.len());
    for (i, &l) in ints.iter().enumerate() {
        let at = yl.data_start + i * yl.item_size;
        let label = usize::try_from(l)
            .map_err(|_| corrupt(&lname, false, at, format!("label {i} is negative ({l})")))?;
        // Classes are numbered 0..K−1 and per-class work allocates K slots: an ID-like label
        // (say 10¹²) must be an error here, not an allocation failure later.
        if label >= MAX_CLASSES {
            let msg = format!(
                "label {i} is {l}: classes must be numbered 0..K-1 with K at most {MAX_CLASSES}"
            );
            return Err(corrupt(&lname, false, at, msg));
        }
        labels.push(label);
    }
    let num_classes = labels.iter().max().map_or(0, |&m| m + 1);
    Dataset::new(x.to_f32_vec(), x.shape[1..].to_vec(), labels, num_classes)
}

/// The header's Python dict literal, parsed strictly: exactly the keys `descr` (a string),
/// `fortran_order` (`False`; `True` is rejected) and `shape` (a tuple of non-negative integers).
mod header {
    /// An error: the offset within the header and a message.
    type HResult<T> = std::result::Result<T, (usize, String)>;

    struct Cursor<'a> {
        s: &'a [u8],
        pos: usize,
    }

    impl Cursor<'_> {
        fn skip_ws(&mut self) {
            while self.pos < self.s.len() && self.s[self.pos] == b' ' {
                self.pos += 1;
            }
        }
        fn peek(&mut self) -> Option<u8> {
            self.skip_ws();
            self.s.get(self.pos).copied()
        }
        fn fail<T>(&self, msg: impl Into<String>) -> HResult<T> {
            Err((self.pos, format!("malformed .npy header: {}", msg.into())))
        }
        fn expect(&mut self, c: u8) -> HResult<()> {
            if self.peek() == Some(c) {
                self.pos += 1;
                Ok(())
            } else {
                self.fail(format!("expected '{}'", c as char))
            }
        }
        fn string(&mut self) -> HResult<String> {
            let quote = match self.peek() {
                Some(q @ (b'\'' | b'"')) => q,
                _ => return self.fail("expected a quoted string"),
            };
            let start = self.pos + 1;
            match self.s[start..].iter().position(|&b| b == quote) {
                Some(len) => {
                    self.pos = start + len + 1;
                    Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
                }
                None => self.fail("unterminated string"),
            }
        }
        fn word(&mut self) -> &[u8] {
            self.skip_ws();
            let start = self.pos;
            while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                self.pos += 1;
            }
            &self.s[start..self.pos]
        }
        fn shape(&mut self) -> HResult<Vec<usize>> {
            self.expect(b'(')?;
            let mut dims = Vec::new();
            loop {
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    break;
                }
                let at = self.pos;
                let word = self.word();
                let dim = std::str::from_utf8(word)
                    .ok()
                    .and_then(|w| w.parse::<usize>().ok());
                match dim {
                    Some(d) => dims.push(d),
                    None => return Err((at, "malformed .npy header: bad shape entry".into())),
                }
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {}
                    _ => return self.fail("expected ',' or ')' in the shape"),
                }
            }
            Ok(dims)
        }
    }

    /// A parsed header: the values and the offsets (within the header) where they start.
    pub(super) struct Header {
        pub(super) descr: String,
        pub(super) descr_at: usize,
        pub(super) shape: Vec<usize>,
        pub(super) shape_at: usize,
    }

    pub(super) fn parse(header: &[u8]) -> HResult<Header> {
        let mut c = Cursor { s: header, pos: 0 };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        c.expect(b'{')?;
        while c.peek() != Some(b'}') {
            let key_at = c.pos;
            let key = c.string()?;
            c.expect(b':')?;
            c.skip_ws();
            let value_at = c.pos;
            let dup = match key.as_str() {
                "descr" => descr.replace((c.string()?, value_at)).is_some(),
                "fortran_order" => match c.word() {
                    b"False" => fortran.replace(false).is_some(),
                    b"True" => {
                        return Err((
                            value_at,
                            "fortran_order True is not supported (C order only)".into(),
                        ));
                    }
                    _ => {
                        return Err((
                            value_at,
                            "malformed .npy header: fortran_order must be True or False".into(),
                        ));
                    }
                },
                "shape" => shape.replace((c.shape()?, value_at)).is_some(),
                _ => {
                    return Err((
                        key_at,
                        format!("malformed .npy header: unexpected key {key:?}"),
                    ));
                }
            };
            if dup {
                return Err((
                    key_at,
                    format!("malformed .npy header: duplicate key {key:?}"),
                ));
            }
            match c.peek() {
                Some(b',') => c.pos += 1,
                Some(b'}') => {}
                _ => return c.fail("expected ',' or '}'"),
            }
        }
        c.pos += 1;
        let rest = &header[c.pos..];
        if rest.last() != Some(&b'\n') || rest[..rest.len() - 1].iter().any(|&b| b != b' ') {
            return c.fail("the dict must be followed only by spaces and a newline");
        }
        match (descr, fortran, shape) {
            (Some((descr, descr_at)), Some(_), Some((shape, shape_at))) => Ok(Header {
                descr,
                descr_at,
                shape,
                shape_at,
            }),
            _ => Err((
                0,
                "malformed .npy header: needs 'descr', 'fortran_order' and 'shape'".into(),
            )),
        }
    }
}
