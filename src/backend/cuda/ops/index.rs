//! Indexing: index_select, gather (a `take` of host-computed offsets) and their backwards.

use super::gpu_of;
use crate::autograd::Op;
use crate::backend::cuda::{buf, grid, launch};
use crate::error::Result;
use crate::tensor::{Float, Shape, Tensor};

fn indices_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&i| i as i64).collect()
}

/// `(outer, size, inner)` around axis `d`.
fn around(dims: &[usize], d: usize) -> (i64, i64, i64) {
    let outer: usize = dims[..d].iter().product();
    let inner: usize = dims[d + 1..].iter().product();
    (outer as i64, dims[d] as i64, inner as i64)
}

pub(crate) fn index_select<T: Float>(
    x: &Tensor<T>,
    d: usize,
    indices: &[usize],
) -> Result<Tensor<T>> {
    let mut dims = x.dims().to_vec();
    dims[d] = indices.len();
    let shape = Shape::new(dims);
    let gpu = gpu_of(x)?;
    let idx = gpu.upload_raw(&indices_i64(indices))?;
    let (outer, size, inner) = around(x.dims(), d);
    let nsel = indices.len() as i64;
    let mut out = gpu.zeros::<T>(shape.numel())?;
    launch!(
        gpu,
        T,
        "index_select_fwd",
        grid(shape.numel()),
        buf(x)?.slice(),
        &idx,
        out.slice_mut(),
        &outer,
        &nsel,
        &size,
        &inner
    )?;
    let op = Op::IndexSelect {
        input: x.clone(),
        dim: d,
        indices: indices.to_vec(),
    };
    Ok(Tensor::from_op_cuda(out, shape, op))
}

/// The backward of index_select, deterministic: the inverse of `indices` (for each position
/// along the axis, the selections reading it, ascending) goes to the device, and each input
/// position sums its selections' gradients in that order, as the CPU does. No atomics, so
/// repeated indices give the same sums on every run.
pub(crate) fn index_select_backward<T: Float>(
    grad: &Tensor<T>,
    input_shape: &Shape,
    dim: usize,
    indices: &[usize],
) -> Result<Tensor<T>> {
    let gpu = gpu_of(grad)?;
    let (rows, sel) = inverse(indices, input_shape.dims()[dim]);
    let (rows, sel) = (gpu.upload_raw(&rows)?, gpu.upload_raw(&sel)?);
    let (outer, size, inner) = around(input_shape.dims(), dim);
    let nsel = indices.len() as i64;
    let mut dx = gpu.zeros::<T>(input_shape.numel())?;
    launch!(
        gpu,
        T,
        "index_select_bwd",
        grid(input_shape.numel()),
        buf(grad)?.slice(),
        &rows,
        &sel,
        dx.slice_mut(),
        &outer,
        &nsel,
        &size,
        &inner
    )?;
    Ok(Tensor::from_cuda(dx, input_shape.clone()))
}

/// The inverse of `indices` (each below `size`) in CSR form: the selections `j` reading
/// position `s` are `sel[rows[s]..rows[s + 1]]`, ascending.
fn inverse(indices: &[usize], size: usize) -> (Vec<i64>, Vec<i64>) {
    let mut rows = vec![0i64; size + 1];
    for &i in indices {
        rows[i + 1] += 1;
    }
    for s in 0..size {
        rows[s + 1] += rows[s];
    }
    let mut next = rows.clone();
    let mut sel = vec![0i64; indices.len()];
    for (j, &i) in indices.iter().enumerate() {
        sel[next[i] as usize] = j as i64;
        next[i] += 1;
    }
    (rows, sel)
}

/// `out[i] = x[offsets[i]]`, recorded as `op`.
fn take<T: Float>(x: &Tensor<T>, offsets: &[usize], shape: Shape, op: Op<T>) -> Result<Tensor<T>> {
    let gpu = gpu_of(x)?;
    let off = gpu.upload_raw(&indices_i64(offsets))?;
    let n = offsets.len() as i64;
    let mut out = gpu.zeros::<T>(offsets.len())?;
    launch!(
        gpu,
        T,
        "take",
        grid(offsets.len()),
        buf(x)?.slice(),
        &off,
        out.slice_mut(),
        &n
    )?;
    Ok(Tensor::from_op_cuda(out, shape, op))
}

/// `dx[offsets[i]] += grad[i]` into zeros of `input_shape`: the backward of gather, max/min
/// and max-pooling, deterministic. Distinct offsets (max/min, windows that do not overlap)
/// are plain stores; repeated ones are sorted on the host (stably: ascending `i` within an
/// offset, the CPU's order) and each run of equal offsets is summed by one thread. No
/// atomics, so the sums are the same on every run.
pub(crate) fn scatter_add<T: Float>(
    grad: &Tensor<T>,
    offsets: &[usize],
    input_shape: &Shape,
) -> Result<Tensor<T>> {
    let gpu = gpu_of(grad)?;
    let n = offsets.len() as i64;
    let mut dx = gpu.zeros::<T>(input_shape.numel())?;
    if distinct(offsets, input_shape.numel()) {
        let off = gpu.upload_raw(&indices_i64(offsets))?;
        launch!(
            gpu,
            T,
            "scatter_distinct",
            grid(offsets.len()),
            buf(grad)?.slice(),
            &off,
            dx.slice_mut(),
            &n
        )?;
    } else {
        let (src, dst) = sorted_runs(offsets);
        let (src, dst) = (gpu.upload_raw(&src)?, gpu.upload_raw(&dst)?);
        launch!(
            gpu,
            T,
            "scatter_sorted",
            grid(offsets.len()),
            buf(grad)?.slice(),
            &src,
            &dst,
            dx.slice_mut(),
            &n
        )?;
    }
    Ok(Tensor::from_cuda(dx, input_shape.clone()))
}

/// `(src, dst)`: the positions `i` sorted by `offsets[i]`, stably (ascending `i` within an
/// offset), and their offsets.
fn sorted_runs(offsets: &[usize]) -> (Vec<i64>, Vec<i64>) {
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.sort_by_key(|&i| offsets[i]);
    let src = order.iter().map(|&i| i as i64).collect();
    let dst = order.iter().map(|&i| offsets[i] as i64).collect();
    (src, dst)
}

/// True when no offset (each below `len`) appears twice.
fn distinct(offsets: &[usize], len: usize) -> bool {
    let mut seen = vec![0u64; len.div_ceil(64)];
    offsets.iter().all(|&o| {
        let (word, bit) = (o / 64, 1u64 << (o % 64));
        let fresh = seen[word] & bit == 0;
        seen[word] |= bit;
        fresh
    })
}

/// `gather` on the GPU: the flat source offsets are computed on the host (as on the CPU).
pub(crate) fn gather<T: Float>(
    x: &Tensor<T>,
    d: usize,
    index: &[usize],
    index_shape: Shape,
) -> Result<Tensor<T>> {
    let offsets = crate::ops::index::gather_offsets(x.shape(), d, index, &index_shape);
    let op = Op::Gather {
        input: x.clone(),
        dim: d,
        index: index.to_vec(),
    };
    take(x, &offsets, index_shape, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host halves of the deterministic backwards, checked against the naive scatter by
    /// running the kernels' loops here (no GPU needed), down to the bits: same order of sums.
    #[test]
    fn inverse_and_sorted_runs_sum_in_the_cpu_order() {
        let g: Vec<f32> = (0..40).map(|i| 1.0 / (i as f32 + 0.3)).collect();
        let offsets: Vec<usize> = (0..40).map(|i| (i * 7 + i / 3) % 9).collect();
        let mut naive = vec![0f32; 11];
        for (&o, &v) in offsets.iter().zip(&g) {
            naive[o] += v;
        }
        assert!(!distinct(&offsets, 11));
        assert!(distinct(&[3, 0, 10, 64, 2], 65));
        let (src, dst) = sorted_runs(&offsets);
        let mut dx = vec![0f32; 11];
        for k in 0..dst.len() {
            if k > 0 && dst[k - 1] == dst[k] {
                continue;
            }
            let mut acc = 0f32;
            let mut j = k;
            while j < dst.len() && dst[j] == dst[k] {
                acc += g[src[j] as usize];
                j += 1;
            }
            dx[dst[k] as usize] = acc;
        }
        assert_eq!(dx, naive);

        // index_select backward over (outer 1, size 5, inner 1) with repeats and a gap.
        let indices = [3, 0, 3, 1, 3, 0];
        let (rows, sel) = inverse(&indices, 5);
        assert_eq!(rows, vec![0, 2, 3, 3, 6, 6]);
        assert_eq!(sel, vec![1, 5, 3, 0, 2, 4]);
        let mut want = vec![0f32; 5];
        for (j, &i) in indices.iter().enumerate() {
            want[i] += g[j];
        }
        let got: Vec<f32> = (0..5)
            .map(|s| {
                let mut acc = 0f32;
                for k in rows[s]..rows[s + 1] {
                    acc += g[sel[k as usize] as usize];
                }
                acc
            })
            .collect();
        assert_eq!(got, want);
    }
}
