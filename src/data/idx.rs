//! The IDX format of MNIST and Fashion-MNIST: a 4-byte magic number (two zero bytes, a type
//! code, the number of dimensions), each dimension as a big-endian `u32`, then the values in
//! row-major order. Images are `(N, H, W)` unsigned bytes, labels `(N,)` unsigned bytes; both
//! files may be gzip-compressed (detected by the magic bytes, not the file name).
//!
//! Everything is checked before it is used: the magic number, the type code (only unsigned bytes,
//! the type every MNIST-format data set uses), the rank, that the file holds exactly the bytes
//! its header promises, and that the two files agree on the number of items.

use super::{Dataset, corrupt, read_maybe_gzip};
use crate::error::Result;
use std::path::Path;

/// The IDX type code for unsigned bytes.
const UBYTE: u8 = 0x08;

/// A parsed IDX array of unsigned bytes.
struct IdxArray {
    dims: Vec<usize>,
    values: Vec<u8>,
    /// Whether the file was gzip-compressed (offsets then count decompressed bytes).
    gz: bool,
}

/// Loads an MNIST-format pair of files: images `(N, H, W)` become items of shape `[1, H, W]`
/// scaled to `[0, 1]` (divided by 255); labels `(N,)` become class indices, with
/// `num_classes = max label + 1`.
pub fn load_idx(images_path: impl AsRef<Path>, labels_path: impl AsRef<Path>) -> Result<Dataset> {
    let (images_path, labels_path) = (images_path.as_ref(), labels_path.as_ref());
    let images = read_idx(images_path, 3)?;
    let labels = read_idx(labels_path, 1)?;
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if labels.dims[0] != n {
        let msg = format!(
            "{} has {n} images but {} has {} labels",
            images_path.display(),
            labels_path.display(),
            labels.dims[0]
        );
        // Offset 4 is the labels file's item count.
        return Err(corrupt(
            &labels_path.display().to_string(),
            labels.gz,
            4,
            msg,
        ));
    }
    let labels: Vec<usize> = labels.values.iter().map(|&l| usize::from(l)).collect();
    let num_classes = labels.iter().max().map_or(0, |&m| m + 1);
    let data = images
        .values
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    Dataset::new(data, vec![1, h, w], labels, num_classes)
}

/// Reads one IDX file of unsigned bytes and checks that its rank is `rank`.
fn read_idx(path: &Path, rank: usize) -> Result<IdxArray> {
    let (bytes, gz) = read_maybe_gzip(path)?;
    let name = path.display().to_string();
    let err = |at: usize, msg: String| corrupt(&name, gz, at, msg);
    if bytes.len() < 4 {
        return Err(err(
            bytes.len(),
            "truncated IDX header (magic number)".into(),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        let msg = format!(
            "bad IDX magic number {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 {rank:02x})",
            bytes[0], bytes[1], bytes[2], bytes[3]
        );
        return Err(err(0, msg));
    }
    if bytes[2] != UBYTE {
        let msg = format!(
            "IDX type code {:#04x} is not supported (only 0x08, unsigned bytes)",
            bytes[2]
        );
        return Err(err(2, msg));
    }
    if usize::from(bytes[3]) != rank {
        let msg = format!("IDX file has {} dimensions, expected {rank}", bytes[3]);
        return Err(err(3, msg));
    }
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        let msg = format!("truncated IDX header: {rank} dimensions need {header_len} bytes");
        return Err(err(bytes.len(), msg));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    if let Some(k) = dims[1..].iter().position(|&d| d == 0) {
        return Err(err(8 + 4 * k, format!("dimension {} is zero", k + 1)));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(4, format!("dimensions {dims:?} overflow")))?;
    let body = bytes.len() - header_len;
    if body < expected {
        let msg = format!(
            "truncated: dimensions {dims:?} need {expected} bytes of data after the {header_len}-byte header, \
             the data ends after {body}"
        );
        return Err(err(bytes.len(), msg));
    }
    if body > expected {
        let msg = format!(
            "{} unexpected bytes after the data of dimensions {dims:?}",
            body - expected
        );
        return Err(err(header_len + expected, msg));
    }
    let mut values = bytes;
    values.drain(..header_len);
    Ok(IdxArray { dims, values, gz })
}
