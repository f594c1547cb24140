//! The shipped digits data set: 1,797 handwritten digits as 8×8 images of counts 0..16 (UCI
//! "Optical Recognition of Handwritten Digits", CC BY 4.0; see `datasets/README.md`).
//!
//! The file is compiled into the library ([`digits_embedded`]) so that the default training run
//! needs no path and works from any directory. Items have shape `[1, 8, 8]` (one channel, so
//! convolutional encoders apply; an MLP flattens them) with values divided by 16 into `[0, 1]`.
//! The fixed split puts rows with index % 5 == 0 in the test set (360 rows), as the seed
//! experiments did, so results are comparable across runs and implementations.

use super::{Dataset, corrupt, gzip, read_maybe_gzip};
use crate::error::Result;
use std::path::Path;

/// The gzip-compressed CSV, as shipped in `datasets/digits.csv.gz`.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../datasets/digits.csv.gz");

/// Pixels per image (8×8), the largest pixel value, and the number of classes.
const PIXELS: usize = 64;
const MAX_PIXEL: u32 = 16;
const CLASSES: usize = 10;

/// All 1,797 digits from the copy compiled into the library.
pub fn digits_embedded() -> Result<Dataset> {
    let csv = gzip::decompress(DIGITS_CSV_GZ, "digits.csv.gz (embedded)")?;
    parse_digits_csv(&csv, "digits.csv.gz (embedded)", true)
}

/// The embedded digits split into `(train, test)`: 1,437 and 360 items.
pub fn digits_train_test() -> Result<(Dataset, Dataset)> {
    Ok(split_digits(&digits_embedded()?))
}

/// The fixed digits split: rows with index % 5 == 0 form the test set. Returns `(train, test)`.
pub fn split_digits(all: &Dataset) -> (Dataset, Dataset) {
    all.split(|i| i % 5 == 0)
}

/// Reads a digits CSV file (gzip-compressed or plain): one row per image, 64 integer pixel
/// values in 0..=16 in row-major order, then the label 0..=9, comma-separated, no header.
pub fn load_digits(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let (bytes, gz) = read_maybe_gzip(path)?;
    parse_digits_csv(&bytes, &path.display().to_string(), gz)
}

/// Parses digits CSV text; errors give the byte offset of the offending field.
fn parse_digits_csv(bytes: &[u8], name: &str, decompressed: bool) -> Result<Dataset> {
    let err = |at: usize, msg: String| corrupt(name, decompressed, at, msg);
    let mut data = Vec::new();
    let mut labels = Vec::new();
    let mut line_start = 0;
    for (row, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let at_line = line_start;
        line_start += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if at_line + line.len() + 1 >= bytes.len() {
                break; // the final newline
            }
            return Err(err(at_line, format!("row {row} is empty")));
        }
        let mut field_start = at_line;
        let mut fields = 0;
        for field in line.split(|&b| b == b',') {
            let at = field_start;
            field_start += field.len() + 1;
            let value = std::str::from_utf8(field)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or_else(|| {
                    let text = String::from_utf8_lossy(field);
                    err(
                        at,
                        format!("row {row}: {text:?} is not a non-negative integer"),
                    )
                })?;
            if fields < PIXELS {
                if value > MAX_PIXEL {
                    let msg = format!("row {row}: pixel value {value} is above {MAX_PIXEL}");
                    return Err(err(at, msg));
                }
                data.push(value as f32 / MAX_PIXEL as f32);
            } else if fields == PIXELS {
                if value as usize >= CLASSES {
                    return Err(err(
                        at,
                        format!("row {row}: label {value} is not a digit 0..9"),
                    ));
                }
                labels.push(value as usize);
            } else {
                return Err(err(
                    at,
                    format!("row {row} has more than {} fields", PIXELS + 1),
                ));
            }
            fields += 1;
        }
        if fields != PIXELS + 1 {
            let msg = format!("row {row} has {fields} fields, expected {}", PIXELS + 1);
            return Err(err(at_line, msg));
        }
    }
    if labels.is_empty() {
        return Err(err(0, "no rows: the digits CSV is empty".into()));
    }
    Dataset::new(data, vec![1, 8, 8], labels, CLASSES)
}
