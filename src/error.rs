//! The crate's one error type. Every fallible public function returns [`Result`], and every
//! error names the operation and the shapes or values that made it fail.

use std::fmt;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that had to agree (or broadcast) did not.
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// An axis or dimension index outside `0..rank`.
    BadAxis {
        op: &'static str,
        axis: isize,
        shape: Vec<usize>,
    },
    /// A tensor had the wrong rank for the operation.
    BadRank {
        op: &'static str,
        expected: &'static str,
        shape: Vec<usize>,
    },
    /// A reduction over an axis of length zero (its result would be undefined).
    EmptyReduction { op: &'static str, shape: Vec<usize> },
    /// An index (gather, index-select, class target) outside its dimension.
    IndexOutOfRange {
        op: &'static str,
        index: i64,
        size: usize,
    },
    /// Anything else a caller passed in that the operation cannot accept.
    InvalidInput { op: &'static str, message: String },
    /// An I/O failure, with the path it concerned.
    Io { path: String, message: String },
    /// A GPU could not be used: no GPU support in this build, CUDA libraries or device missing,
    /// a driver or kernel-compilation failure, or tensors on different devices.
    Cuda { op: &'static str, message: String },
    /// A corrupt or truncated data file: the file and the byte offset where reading failed.
    Data {
        file: String,
        at: u64,
        message: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            op,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ShapeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: shapes {lhs:?} and {rhs:?} are incompatible")
            }
            Error::BadAxis { op, axis, shape } => {
                write!(
                    f,
                    "{op}: axis {axis} is out of range for shape {shape:?} (rank {})",
                    shape.len()
                )
            }
            Error::BadRank {
                op,
                expected,
                shape,
            } => write!(
                f,
                "{op}: expected {expected}, got shape {shape:?} (rank {})",
                shape.len()
            ),
            Error::EmptyReduction { op, shape } => {
                write!(
                    f,
                    "{op}: cannot reduce over an empty axis of shape {shape:?}"
                )
            }
            Error::IndexOutOfRange { op, index, size } => {
                write!(
                    f,
                    "{op}: index {index} is out of range for a dimension of size {size}"
                )
            }
            Error::InvalidInput { op, message } => write!(f, "{op}: {message}"),
            Error::Cuda { op, message } => write!(f, "{op}: {message}"),
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Data { file, at, message } => write!(f, "{file}: at byte {at}: {message}"),
        }
    }
}

impl std::error::Error for Error {}
