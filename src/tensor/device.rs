//! Where a tensor's data lives: host memory, or the memory of one CUDA GPU.
//!
//! [`Device`] exists whether or not the crate was built with the `cuda` feature, so that user
//! code (configs, `--device cuda`) compiles the same either way; asking for a GPU in a build
//! without the feature is an `Err`, never a panic.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory and the CPU kernels of `backend::cpu`.
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal (`backend::cuda`, feature `cuda`).
    Cuda(usize),
}

impl Device {
    /// True for [`Device::Cuda`].
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// Checks that this device can be used in this build and on this machine: the CPU always;
    /// a GPU when the crate has the `cuda` feature, the CUDA libraries load and the device
    /// exists (this initialises its context).
    pub fn check(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => crate::backend::cuda::Gpu::get(i).map(drop),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(Error::Cuda {
                op: "device",
                message: "this build has no GPU support: rebuild with `--features cuda`".into(),
            }),
        }
    }
}

impl Device {
    /// Waits until every op queued on this device has finished (a no-op on the CPU): timers
    /// around GPU work stop only after it.
    pub fn synchronize(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => crate::backend::cuda::synchronize(self),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => self.check(),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// `cpu`, `cuda` (device 0) or `cuda:N`.
impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "device",
                format!("unknown device {s:?}: expected cpu, cuda or cuda:N"),
            )
        };
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => {
                let n = other.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse().map(Device::Cuda).map_err(|_| bad())
            }
        }
    }
}
