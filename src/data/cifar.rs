//! The CIFAR-10 binary format: each `data_batch_{1..5}.bin` and `test_batch.bin` is a sequence
//! of 3,073-byte records, one label byte (0..9) then 3,072 pixel bytes (the red, green and blue
//! 32×32 planes, each row-major). Items have shape `[3, 32, 32]` with values divided by 255.
//! A batch file may be gzip-compressed (detected by its magic bytes, as for IDX files).
//!
//! Errors: an empty file, a length that is not a whole number of records (at the end of the
//! file, naming the truncated record and where it starts) and a label above 9 (at its record)
//! are [`Error::Data`]; a missing file is [`Error::Io`] with its path.

use super::{Dataset, corrupt, read_maybe_gzip};
use crate::error::{Error, Result};
use std::path::Path;

const CHANNELS: usize = 3;
const SIDE: usize = 32;
const PIXELS: usize = CHANNELS * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;
const CLASSES: usize = 10;

/// Loads and concatenates CIFAR-10 binary batch files, in the order given.
pub fn load_cifar10<P: AsRef<Path>>(paths: &[P]) -> Result<Dataset> {
    if paths.is_empty() {
        return Err(Error::invalid("load_cifar10", "no batch files given"));
    }
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let (bytes, gz) = read_maybe_gzip(path)?;
        let name = path.display().to_string();
        if bytes.is_empty() {
            return Err(corrupt(&name, gz, 0, "empty CIFAR-10 batch file"));
        }
        let whole = bytes.len() / RECORD * RECORD;
        if whole != bytes.len() {
            let msg = format!(
                "truncated record {} (starting at byte {whole}): the file ends after {} of its \
                 {RECORD} bytes",
                whole / RECORD,
                bytes.len() - whole
            );
            return Err(corrupt(&name, gz, bytes.len(), msg));
        }
        for (r, record) in bytes.chunks_exact(RECORD).enumerate() {
            let label = usize::from(record[0]);
            if label >= CLASSES {
                let msg = format!("record {r}: label {label} is not a class 0..9");
                return Err(corrupt(&name, gz, r * RECORD, msg));
            }
            labels.push(label);
            data.extend(record[1..].iter().map(|&v| f32::from(v) / 255.0));
        }
    }
    Dataset::new(data, vec![CHANNELS, SIDE, SIDE], labels, CLASSES)
}

/// Loads the standard layout of the extracted `cifar-10-batches-bin` folder: returns
/// `(train, test)` from `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`.
pub fn load_cifar10_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset)> {
    let dir = dir.as_ref();
    let train: Vec<_> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    Ok((
        load_cifar10(&train)?,
        load_cifar10(&[dir.join("test_batch.bin")])?,
    ))
}
