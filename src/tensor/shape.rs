//! Shapes, row-major strides, axis normalisation and NumPy broadcasting.

use crate::error::{Error, Result};
use std::fmt;

/// The dimensions of a tensor, outermost first. Data is always stored row-major and contiguous.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    /// The shape of a scalar (rank 0, one element).
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.0[i + 1];
        }
        strides
    }
    pub(crate) fn to_vec(&self) -> Vec<usize> {
        self.0.clone()
    }

    /// Resolves a possibly negative axis (`-1` is the last) to `0..rank`.
    pub fn axis(&self, op: &'static str, axis: isize) -> Result<usize> {
        let rank = self.rank() as isize;
        let resolved = if axis < 0 { axis + rank } else { axis };
        if resolved < 0 || resolved >= rank {
            return Err(Error::BadAxis {
                op,
                axis,
                shape: self.to_vec(),
            });
        }
        Ok(resolved as usize)
    }

    /// Resolves a list of axes, sorted and without repeats. An empty list means every axis.
    pub fn axes(&self, op: &'static str, axes: &[isize]) -> Result<Vec<usize>> {
        if axes.is_empty() {
            return Ok((0..self.rank()).collect());
        }
        let mut out = axes
            .iter()
            .map(|&a| self.axis(op, a))
            .collect::<Result<Vec<_>>>()?;
        out.sort_unstable();
        if out.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::invalid(op, format!("repeated axis in {axes:?}")));
        }
        Ok(out)
    }

    /// The NumPy broadcast of two shapes: align on the right; each pair of dims must be equal or
    /// contain a 1.
    pub fn broadcast(op: &'static str, lhs: &Shape, rhs: &Shape) -> Result<Shape> {
        let rank = lhs.rank().max(rhs.rank());
        let mut out = vec![0; rank];
        for (i, slot) in out.iter_mut().enumerate() {
            let l = dim_from_right(lhs, rank - 1 - i);
            let r = dim_from_right(rhs, rank - 1 - i);
            *slot = match (l, r) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => {
                    return Err(Error::ShapeMismatch {
                        op,
                        lhs: lhs.to_vec(),
                        rhs: rhs.to_vec(),
                    });
                }
            };
        }
        Ok(Shape(out))
    }

    /// Strides for reading a tensor of this shape as if it had `target`'s shape (broadcast
    /// dims get stride 0). `target` must be a broadcast of `self`.
    pub(crate) fn broadcast_strides(&self, target: &Shape) -> Vec<usize> {
        let own = self.strides();
        let offset = target.rank() - self.rank();
        (0..target.rank())
            .map(|i| {
                if i < offset || self.0[i - offset] == 1 {
                    0
                } else {
                    own[i - offset]
                }
            })
            .collect()
    }
}

fn dim_from_right(shape: &Shape, from_right: usize) -> usize {
    if from_right < shape.rank() {
        shape.0[shape.rank() - 1 - from_right]
    } else {
        1
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape(d.to_vec())
    }
}
impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(d)
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape(d.to_vec())
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}

/// Iterates over the flat offsets of a strided view, in row-major order of `shape`.
/// Used by the general (non-contiguous) paths of broadcasting and movement ops.
pub(crate) struct StridedIter<'a> {
    shape: &'a [usize],
    strides: &'a [usize],
    index: Vec<usize>,
    offset: usize,
    remaining: usize,
}

impl<'a> StridedIter<'a> {
    pub(crate) fn new(shape: &'a [usize], strides: &'a [usize]) -> Self {
        StridedIter {
            shape,
            strides,
            index: vec![0; shape.len()],
            offset: 0,
            remaining: shape.iter().product(),
        }
    }
}

impl Iterator for StridedIter<'_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.offset;
        for d in (0..self.shape.len()).rev() {
            self.index[d] += 1;
            self.offset += self.strides[d];
            if self.index[d] < self.shape[d] {
                break;
            }
            self.offset -= self.strides[d] * self.shape[d];
            self.index[d] = 0;
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        let a = Shape::new([3, 1, 5]);
        let b = Shape::new([4, 1]);
        assert_eq!(
            Shape::broadcast("t", &a, &b).unwrap(),
            Shape::new([3, 4, 5])
        );
        let err = Shape::broadcast("add", &Shape::new([2, 3]), &Shape::new([4])).unwrap_err();
        assert!(err.to_string().contains("[2, 3]") && err.to_string().contains("[4]"));
    }

    #[test]
    fn strided_iter_visits_broadcast_offsets() {
        let s = Shape::new([2, 1]);
        let target = Shape::new([2, 3]);
        let st = s.broadcast_strides(&target);
        let offs: Vec<_> = StridedIter::new(target.dims(), &st).collect();
        assert_eq!(offs, vec![0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn negative_axes_resolve() {
        let s = Shape::new([2, 3, 4]);
        assert_eq!(s.axis("t", -1).unwrap(), 2);
        assert!(s.axis("t", 3).is_err());
        assert_eq!(s.axes("t", &[-1, 0]).unwrap(), vec![0, 2]);
        assert!(s.axes("t", &[1, -2]).is_err());
    }
}
