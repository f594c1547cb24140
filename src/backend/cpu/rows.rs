//! Row-wise maps into a fresh buffer that is written once, never zero-filled first.
//!
//! Why: an op's output is usually `vec![0; len]` then overwritten. For the megabyte
//! activations of a convolutional network that zero-fill is a whole extra write pass (a few
//! percent of `cnn_step`, once the allocator reuses pages instead of faulting in fresh zeroed
//! ones). [`map_rows`] writes every element exactly once from a per-row function; it is sound by
//! construction: its own loops write each element of the spare capacity before the length is set,
//! so no caller can leave an element uninitialised.

use super::simd::dispatch;
use crate::tensor::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Values per parallel block of rows (fixed: the split never depends on the thread count, and
/// each element depends on its own row only anyway).
const BLOCK: usize = 1 << 14;

#[inline(always)]
fn zip_body<T: Float, F: Fn(T, T) -> T>(a: &[T], b: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        o.write(f(x, y));
    }
}
dispatch!(fn zip_serial<T: Float, F: Fn(T, T) -> T>(a: &[T], b: &[T], out: &mut [MaybeUninit<T>], f: &F) => zip_body);

#[inline(always)]
fn map_body<T: Float, F: Fn(T, T) -> T>(a: &[T], out: &mut [MaybeUninit<T>], f: &F) {
    for (o, &x) in out.iter_mut().zip(a) {
        o.write(f(x, T::ZERO));
    }
}
dispatch!(fn map_serial<T: Float, F: Fn(T, T) -> T>(a: &[T], out: &mut [MaybeUninit<T>], f: &F) => map_body);

/// A new buffer of `x.len()` values laid out as rows of `l`: element `j` of row `r` is
/// `row_fn(r)(x[r·l + j], other[r·l + j])`, with `other` read as zeros when absent. Rows in
/// parallel over fixed blocks. Panics if `other` is shorter than `x` (callers check shapes).
pub fn map_rows<T, F, G>(x: &[T], other: Option<&[T]>, l: usize, row_fn: G) -> Vec<T>
where
    T: Float,
    F: Fn(T, T) -> T,
    G: Fn(usize) -> F + Sync,
{
    let len = x.len();
    if let Some(o) = other {
        assert!(
            o.len() >= len,
            "map_rows: the second input is shorter than the first"
        );
    }
    let l = l.max(1);
    let rows_per_block = (BLOCK / l).max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    let body = |(b, block): (usize, &mut [MaybeUninit<T>])| {
        for (i, orow) in block.chunks_mut(l).enumerate() {
            let start = (b * rows_per_block + i) * l;
            let r = start..start + orow.len();
            let f = row_fn(b * rows_per_block + i);
            match other {
                Some(o) => zip_serial(&x[r.clone()], &o[r], orow, &f),
                None => map_serial(&x[r], orow, &f),
            }
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if len > rows_per_block * l {
        spare
            .par_chunks_mut(rows_per_block * l)
            .enumerate()
            .for_each(body);
    } else {
        body((0, spare));
    }
    // SAFETY: the blocks partition `0..len`, the rows partition each block, and each row is
    // written in full by `zip_serial`/`map_serial`: their inputs are slices of exactly the row's
    // length (`x` and `other` hold at least `len` values), so the zipped loops visit every
    // element of the row. A panic above leaves the length at 0, which is also sound.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_row_with_its_own_function() {
        // Rows of 7 (a ragged last row), several parallel blocks, with and without `other`.
        let x: Vec<f32> = (0..40_001).map(|i| (i % 13) as f32).collect();
        let y: Vec<f32> = (0..40_001).map(|i| (i % 5) as f32).collect();
        let got = map_rows(&x, Some(&y), 7, |r| {
            move |a: f32, b: f32| a * (r % 3) as f32 + b
        });
        for (i, &v) in got.iter().enumerate() {
            assert_eq!(v, x[i] * ((i / 7) % 3) as f32 + y[i], "at {i}");
        }
        let got = map_rows(&x[..20], None, 4, |r| {
            move |a: f32, b: f32| a + b + r as f32
        });
        let want: Vec<f32> = (0..20).map(|i| x[i] + (i / 4) as f32).collect();
        assert_eq!(got, want);
        assert!(map_rows::<f64, _, _>(&[], None, 3, |_| |a, _| a).is_empty());
    }
}
