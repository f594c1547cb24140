//! Out-of-place matrix transpose in 8×8 tiles: for f32 on AVX2 processors, eight row loads,
//! 24 shuffles and eight row stores per tile (explicit intrinsics: LLVM leaves the portable tile
//! loop scalar); elsewhere the portable tile loop, compiled with the runtime AVX2 dispatch of
//! [`super::simd`]. A transpose moves bits, so both paths give identical results.
//!
//! Why: `matrixmultiply` packs an operand quickly only when it runs along the inner dimension
//! in memory (A column-major, B row-major). The weight gradient of a convolution multiplies two
//! matrices whose inner dimension is the pixels, contiguous in both, so both would be packed
//! element by element with strided reads (a tenth of the `cnn_step` workload); transposed first,
//! both pack with contiguous copies.

use super::simd::dispatch;
use crate::tensor::Float;

/// Side of a tile.
const TILE: usize = 8;

#[inline(always)]
fn transpose_body<T: Float>(
    src: &[T],
    ld_src: usize,
    rows: usize,
    cols: usize,
    dst: &mut [T],
    ld_dst: usize,
) {
    let (rows_t, cols_t) = (rows / TILE * TILE, cols / TILE * TILE);
    for i0 in (0..rows_t).step_by(TILE) {
        for j0 in (0..cols_t).step_by(TILE) {
            let mut tile = [[T::ZERO; TILE]; TILE];
            for (r, t) in tile.iter_mut().enumerate() {
                t.copy_from_slice(&src[(i0 + r) * ld_src + j0..][..TILE]);
            }
            for c in 0..TILE {
                let d = &mut dst[(j0 + c) * ld_dst + i0..][..TILE];
                for (r, v) in d.iter_mut().enumerate() {
                    *v = tile[r][c];
                }
            }
        }
        for j in cols_t..cols {
            for r in i0..i0 + TILE {
                dst[j * ld_dst + r] = src[r * ld_src + j];
            }
        }
    }
    for i in rows_t..rows {
        for j in 0..cols {
            dst[j * ld_dst + i] = src[i * ld_src + j];
        }
    }
}
dispatch!(fn transpose_serial<T: Float>(src: &[T], ld_src: usize, rows: usize, cols: usize, dst: &mut [T], ld_dst: usize) => transpose_body);

/// `dst[j·ld_dst + i] = src[i·ld_src + j]` for `i < rows`, `j < cols`: the `rows × cols`
/// matrix at `src` (row stride `ld_src`) written transposed at `dst` (row stride `ld_dst`).
/// Other entries of `dst` are untouched.
pub fn transpose<T: Float>(
    src: &[T],
    ld_src: usize,
    rows: usize,
    cols: usize,
    dst: &mut [T],
    ld_dst: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        ld_src >= cols
            && ld_dst >= rows
            && src.len() >= (rows - 1) * ld_src + cols
            && dst.len() >= (cols - 1) * ld_dst + rows,
        "transpose: the matrices do not fit their buffers"
    );
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == crate::tensor::DType::F32 && super::simd::has_avx2_fma() {
        // SAFETY: `T::DTYPE` says `T` is exactly f32, so reinterpreting both slices is an
        // identity; AVX2 was detected at run time just above.
        unsafe {
            let s = std::slice::from_raw_parts(src.as_ptr().cast::<f32>(), src.len());
            let d = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), dst.len());
            x86::transpose_f32(s, ld_src, rows, cols, d, ld_dst);
        }
        return;
    }
    transpose_serial(src, ld_src, rows, cols, dst, ld_dst);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::TILE;
    use std::arch::x86_64::*;

    /// The f32 transpose: whole 8×8 tiles in registers, the ragged edges element by element.
    /// The caller has checked that both matrices fit their slices.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn transpose_f32(
        src: &[f32],
        ld_src: usize,
        rows: usize,
        cols: usize,
        dst: &mut [f32],
        ld_dst: usize,
    ) {
        let (rows_t, cols_t) = (rows / TILE * TILE, cols / TILE * TILE);
        for i0 in (0..rows_t).step_by(TILE) {
            for j0 in (0..cols_t).step_by(TILE) {
                let mut r = [_mm256_setzero_ps(); TILE];
                for (k, v) in r.iter_mut().enumerate() {
                    let row = &src[(i0 + k) * ld_src + j0..][..TILE];
                    // SAFETY: `row` holds exactly 8 f32; unaligned load.
                    *v = unsafe { _mm256_loadu_ps(row.as_ptr()) };
                }
                let c = tile(r);
                for (k, v) in c.iter().enumerate() {
                    let row = &mut dst[(j0 + k) * ld_dst + i0..][..TILE];
                    // SAFETY: `row` holds exactly 8 f32; unaligned store.
                    unsafe { _mm256_storeu_ps(row.as_mut_ptr(), *v) };
                }
            }
            for j in cols_t..cols {
                for i in i0..i0 + TILE {
                    dst[j * ld_dst + i] = src[i * ld_src + j];
                }
            }
        }
        for i in rows_t..rows {
            for j in 0..cols {
                dst[j * ld_dst + i] = src[i * ld_src + j];
            }
        }
    }

    /// The transpose of eight rows of eight lanes: pairs interleaved, then quads, then halves.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn tile(r: [__m256; TILE]) -> [__m256; TILE] {
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let s = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        [
            _mm256_permute2f128_ps::<0x20>(s[0], s[4]),
            _mm256_permute2f128_ps::<0x20>(s[1], s[5]),
            _mm256_permute2f128_ps::<0x20>(s[2], s[6]),
            _mm256_permute2f128_ps::<0x20>(s[3], s[7]),
            _mm256_permute2f128_ps::<0x31>(s[0], s[4]),
            _mm256_permute2f128_ps::<0x31>(s[1], s[5]),
            _mm256_permute2f128_ps::<0x31>(s[2], s[6]),
            _mm256_permute2f128_ps::<0x31>(s[3], s[7]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both element types (f32 takes the intrinsic path on AVX2 machines), whole tiles and
    /// ragged edges, with row strides wider than the matrices.
    fn check<T: Float>() {
        for (rows, cols) in [(1, 1), (8, 8), (3, 17), (19, 5), (16, 24), (9, 9), (24, 40)] {
            let (ld_src, ld_dst) = (cols + 2, rows + 3);
            let src: Vec<T> = (0..rows * ld_src).map(T::from_usize).collect();
            let mut dst = vec![-T::ONE; cols * ld_dst];
            transpose(&src, ld_src, rows, cols, &mut dst, ld_dst);
            for j in 0..cols {
                for i in 0..ld_dst {
                    let want = if i < rows {
                        src[i * ld_src + j]
                    } else {
                        -T::ONE
                    };
                    assert_eq!(dst[j * ld_dst + i], want, "{rows}x{cols} at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn matches_the_definition_on_ragged_shapes() {
        check::<f32>();
        check::<f64>();
    }
}
