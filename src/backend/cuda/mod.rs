//! The CUDA backend (feature `cuda`): GPU storage for tensors, one lazily created context per
//! device, cuBLAS GEMMs and kernels written in CUDA C (`kernels/*.cu`) compiled at run time
//! with NVRTC, once per process, device and element type.
//!
//! cudarc loads libcuda, libnvrtc and libcublas when first used and panics when one is missing,
//! so `Gpu::get` probes the three libraries first and turns every failure (no library, no
//! device, driver error) into an `Err`. Nothing here runs unless a tensor is moved to a GPU.
//!
//! Op entry points live in `ops` (elementwise, movement, indexing, reductions), `blas`
//! (matmul, linear), `nn` (conv, pooling, batch norm) and `similarity`; `backward` is the GPU
//! half of the autograd table; `optim` holds the fused optimiser updates.

pub(crate) mod backward;
pub(crate) mod blas;
mod launch;
pub(crate) use launch::launch;
pub mod kernels;
pub(crate) mod nn;
pub(crate) mod ops;
pub(crate) mod optim;
pub(crate) mod similarity;

use crate::error::{Error, Result};
use crate::tensor::{DType, Device, Float, Storage, Tensor};
use cudarc::cublas::{CudaBlas, Gemm, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut,
    DeviceRepr, LaunchConfig, ValidAsZeroBits,
};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What the GPU backend needs of an element type: cudarc's marker traits, the C type name the
/// kernels are compiled for, and the matching cuBLAS GEMM. Implemented for `f32` and `f64`.
pub trait CudaFloat: DeviceRepr + ValidAsZeroBits + Unpin + Sized + 'static {
    /// The C type `T` stands for in the kernel sources.
    const C_TYPE: &'static str;

    /// cuBLAS `sgemm`/`dgemm`, strided and batched.
    ///
    /// # Safety
    /// The configuration must address only elements inside `a`, `b` and `c`.
    #[doc(hidden)]
    unsafe fn gemm_batched(
        blas: &CudaBlas,
        cfg: StridedBatchedConfig<Self>,
        a: &CudaView<'_, Self>,
        b: &CudaView<'_, Self>,
        c: &mut CudaViewMut<'_, Self>,
    ) -> std::result::Result<(), cudarc::cublas::result::CublasError>;
}

macro_rules! impl_cuda_float {
    ($t:ty, $c:expr) => {
        impl CudaFloat for $t {
            const C_TYPE: &'static str = $c;
            unsafe fn gemm_batched(
                blas: &CudaBlas,
                cfg: StridedBatchedConfig<Self>,
                a: &CudaView<'_, Self>,
                b: &CudaView<'_, Self>,
                c: &mut CudaViewMut<'_, Self>,
            ) -> std::result::Result<(), cudarc::cublas::result::CublasError> {
                // SAFETY: forwarded from this function's contract.
                unsafe { blas.gemm_strided_batched(cfg, a, b, c) }
            }
        }
    };
}
impl_cuda_float!(f32, "float");
impl_cuda_float!(f64, "double");

/// Devices addressable by ordinal (contexts are created on first use).
const MAX_DEVICES: usize = 16;

/// One GPU: its context, the stream every op is queued on, the cuBLAS handle and the compiled
/// kernels.
pub(crate) struct Gpu {
    ordinal: usize,
    pub(crate) stream: Arc<CudaStream>,
    /// cuBLAS handles must not be used from two threads at once.
    blas: Mutex<CudaBlas>,
    /// The kernel module per element type (f32, f64), compiled on first use.
    modules: [OnceLock<std::result::Result<Arc<CudaModule>, Error>>; 2],
    functions: Mutex<HashMap<(DType, &'static str), CudaFunction>>,
    /// The first error of an op that cannot return one (`exp`, `relu`...): reported by the next
    /// op on this device that can.
    poisoned: Mutex<Option<Error>>,
    _ctx: Arc<CudaContext>,
}

impl Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu(cuda:{})", self.ordinal)
    }
}

/// `Error::Cuda` for `op` from any cudarc error.
pub(crate) fn cuda_err<E: Debug>(op: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Cuda {
        op,
        message: format!("{e:?}"),
    }
}

/// Checks that libcuda, libnvrtc and libcublas can be loaded; cudarc panics on first use of a
/// missing one.
pub fn probe_libraries() -> Result<()> {
    // SAFETY: each probe only tries to dlopen the library under its candidate names.
    let (driver, nvrtc, blas) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    };
    let missing = |lib: &str, hint: &str| {
        Err(Error::Cuda {
            op: "cuda",
            message: format!(
                "CUDA unavailable: {lib} not found ({hint}; set LD_LIBRARY_PATH, see docs/cuda.md)"
            ),
        })
    };
    if !driver {
        return missing("libcuda.so", "is the NVIDIA driver installed?");
    }
    if !nvrtc {
        return missing(
            "libnvrtc.so.13",
            "CUDA 13 NVRTC: the toolkit, or `pip install nvidia-cuda-nvrtc`",
        );
    }
    if !blas {
        return missing(
            "libcublas.so.13",
            "CUDA 13 cuBLAS: the toolkit, or `pip install nvidia-cublas`",
        );
    }
    Ok(())
}

impl Gpu {
    /// The GPU with this ordinal, initialised on first use; every failure is an `Err` (and is
    /// remembered: a device that failed once is not retried in this process).
    pub(crate) fn get(ordinal: usize) -> Result<Arc<Gpu>> {
        static GPUS: [OnceLock<std::result::Result<Arc<Gpu>, Error>>; MAX_DEVICES] =
            [const { OnceLock::new() }; MAX_DEVICES];
        let slot = GPUS.get(ordinal).ok_or_else(|| Error::Cuda {
            op: "cuda",
            message: format!("device ordinal {ordinal} is beyond the supported {MAX_DEVICES}"),
        })?;
        slot.get_or_init(|| {
            // cudarc panics on a missing symbol (a driver older than the CUDA 13 bindings):
            // catch that too, so that no GPU problem ever aborts the caller.
            std::panic::catch_unwind(|| Self::init(ordinal)).unwrap_or_else(|_| {
                Err(Error::Cuda {
                    op: "cuda",
                    message: "CUDA initialisation panicked inside cudarc (driver too old?)".into(),
                })
            })
        })
        .clone()
    }

    fn init(ordinal: usize) -> Result<Arc<Gpu>> {
        probe_libraries()?;
        let count = CudaContext::device_count().map_err(cuda_err("cuda device count"))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Cuda {
                op: "cuda",
                message: format!("no device cuda:{ordinal} ({count} CUDA devices found)"),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("cuda context"))?;
        // SAFETY: every op of this crate is queued on the one stream below, so buffers need no
        // cross-stream events; turning event tracking off saves two events per allocation.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(cuda_err("cublas"))?;
        Ok(Arc::new(Gpu {
            ordinal,
            stream,
            blas: Mutex::new(blas),
            modules: [OnceLock::new(), OnceLock::new()],
            functions: Mutex::new(HashMap::new()),
            poisoned: Mutex::new(None),
            _ctx: ctx,
        }))
    }

    pub(crate) fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The kernel `name` compiled for `T` (the module is compiled on first use).
    pub(crate) fn function<T: Float>(&self, name: &'static str) -> Result<CudaFunction> {
        let key = (T::DTYPE, name);
        if let Some(f) = lock(&self.functions).get(&key) {
            return Ok(f.clone());
        }
        let slot = match T::DTYPE {
            DType::F32 => &self.modules[0],
            DType::F64 => &self.modules[1],
        };
        let module = slot
            .get_or_init(|| {
                let ptx = kernels::compile::<T>()?;
                self._ctx
                    .load_module(ptx)
                    .map_err(cuda_err("loading the CUDA kernels"))
            })
            .clone()?;
        let f = module
            .load_function(name)
            .map_err(cuda_err("loading a CUDA kernel"))?;
        lock(&self.functions).insert(key, f.clone());
        Ok(f)
    }

    /// A zero-filled buffer of `len` elements.
    pub(crate) fn zeros<T: Float>(self: &Arc<Self>, len: usize) -> Result<Buffer<T>> {
        let slice = self
            .stream
            .alloc_zeros::<T>(len.max(1))
            .map_err(cuda_err("cuda alloc"))?;
        Ok(Buffer::new(slice, self.clone()))
    }

    /// A buffer holding a copy of `data`.
    pub(crate) fn upload<T: DeviceRepr + Float>(self: &Arc<Self>, data: &[T]) -> Result<Buffer<T>> {
        Ok(Buffer::new(self.upload_raw(data)?, self.clone()))
    }

    /// A raw device copy of host values (indices, masks, shape metadata). Never empty, so that
    /// a kernel argument always points at an allocation.
    pub(crate) fn upload_raw<U: DeviceRepr + Copy + Default>(
        &self,
        data: &[U],
    ) -> Result<CudaSlice<U>> {
        let padded;
        let data = if data.is_empty() {
            padded = [U::default()];
            &padded[..]
        } else {
            data
        };
        self.stream
            .clone_htod(data)
            .map_err(cuda_err("cuda upload"))
    }

    /// Waits for every queued op (timers, host reads).
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(cuda_err("cuda synchronize"))
    }

    fn poison(&self, e: Error) {
        lock(&self.poisoned).get_or_insert(e);
    }

    fn check_poison(&self) -> Result<()> {
        match lock(&self.poisoned).as_ref() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    pub(crate) fn blas(&self) -> std::sync::MutexGuard<'_, CudaBlas> {
        lock(&self.blas)
    }
}

/// A mutex's guard, also after a panic elsewhere (the guarded maps stay consistent).
fn lock<M>(m: &Mutex<M>) -> std::sync::MutexGuard<'_, M> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Copies of device buffers to the host made by [`Tensor::data`] (not by explicit moves):
/// the parity suite checks that ops never make one.
pub fn implicit_host_copies() -> u64 {
    HOST_COPIES.load(Ordering::Relaxed)
}
static HOST_COPIES: AtomicU64 = AtomicU64::new(0);

/// A tensor's data on a GPU, with the host copy [`Tensor::data`] makes on first use.
pub(crate) struct Buffer<T: Float> {
    slice: CudaSlice<T>,
    gpu: Arc<Gpu>,
    host: OnceLock<Vec<T>>,
}

impl<T: Float> Buffer<T> {
    pub(crate) fn new(slice: CudaSlice<T>, gpu: Arc<Gpu>) -> Self {
        Buffer {
            slice,
            gpu,
            host: OnceLock::new(),
        }
    }
    pub(crate) fn device(&self) -> usize {
        self.gpu.ordinal
    }
    pub(crate) fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
    pub(crate) fn slice(&self) -> &CudaSlice<T> {
        &self.slice
    }
    pub(crate) fn slice_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.slice
    }

    /// The device data for an update in place: the host copy, now stale, is dropped.
    pub(crate) fn slice_for_update(&mut self) -> &mut CudaSlice<T> {
        self.host.take();
        &mut self.slice
    }

    /// A device-side copy of this buffer.
    pub(crate) fn duplicate(&self) -> Result<Buffer<T>> {
        let slice = self
            .gpu
            .stream
            .clone_dtod(&self.slice)
            .map_err(cuda_err("cuda copy"))?;
        Ok(Buffer::new(slice, self.gpu.clone()))
    }

    /// A fresh host copy (not cached, not counted as implicit).
    pub(crate) fn download(&self) -> Result<Vec<T>> {
        self.gpu
            .stream
            .clone_dtoh(&self.slice)
            .map_err(cuda_err("cuda download"))
    }

    /// The host copy, made once; a failed copy is an `Err` (and is retried next time).
    pub(crate) fn try_host(&self) -> Result<&[T]> {
        if let Some(h) = self.host.get() {
            return Ok(h);
        }
        let v = self.download()?;
        HOST_COPIES.fetch_add(1, Ordering::Relaxed);
        Ok(self.host.get_or_init(|| v))
    }

    /// The host copy; on failure, NaNs, with the error printed once and kept for the next op.
    pub(crate) fn host(&self) -> &[T] {
        match self.try_host() {
            Ok(h) => h,
            Err(e) => {
                eprintln!("contrastive: reading a GPU tensor failed: {e}");
                self.gpu.poison(e);
                self.host
                    .get_or_init(|| vec![T::from_f64(f64::NAN); self.slice.len()])
            }
        }
    }
}

/// The common device of an op's inputs (see `backend::op_device`), with an earlier GPU error
/// reported here.
pub(crate) fn common_device<T: Float>(op: &'static str, inputs: &[&Tensor<T>]) -> Result<Device> {
    let mut gpu: Option<usize> = None;
    for t in inputs {
        if let Device::Cuda(i) = t.device() {
            match gpu {
                Some(g) if g != i => {
                    return Err(Error::Cuda {
                        op,
                        message: format!("inputs on cuda:{g} and cuda:{i}; move them first"),
                    });
                }
                _ => gpu = Some(i),
            }
        }
    }
    let Some(g) = gpu else {
        return Ok(Device::Cpu);
    };
    if let Some(t) = inputs
        .iter()
        .find(|t| !t.is_cuda() && (t.rank() > 0 || t.requires_grad()))
    {
        return Err(Error::Cuda {
            op,
            message: format!(
                "inputs on cuda:{g} and cpu (a tensor of shape {:?}); move them with to_device first",
                t.dims()
            ),
        });
    }
    Gpu::get(g)?.check_poison()?;
    Ok(Device::Cuda(g))
}

/// `t`'s buffer on device `dev`: its own, or (for the CPU scalar constants `common_device`
/// lets through) an uploaded copy.
pub(crate) fn on_device<T: Float>(t: &Tensor<T>, dev: usize) -> Result<Tensor<T>> {
    if t.is_cuda() {
        Ok(t.clone())
    } else {
        t.detach().to_device(&Device::Cuda(dev))
    }
}

/// The buffer of a tensor known to be on a GPU.
pub(crate) fn buf<T: Float>(t: &Tensor<T>) -> Result<&Buffer<T>> {
    t.cuda_buffer().ok_or_else(|| Error::Cuda {
        op: "cuda",
        message: format!(
            "internal: a tensor {:?} expected on the GPU is on the CPU",
            t.dims()
        ),
    })
}

/// The storage of `t` moved to `to` (called by [`Tensor::to_device`] across devices).
pub(crate) fn move_storage<T: Float>(t: &Tensor<T>, to: Device) -> Result<Storage<T>> {
    match to {
        Device::Cpu => {
            let b = buf(t)?;
            let host = match b.host.get() {
                Some(h) => h.clone(),
                None => b.download()?,
            };
            Ok(Storage::Cpu(Arc::new(host)))
        }
        Device::Cuda(i) => {
            let gpu = Gpu::get(i)?;
            let host = t.try_to_vec()?;
            Ok(Storage::Cuda(Arc::new(gpu.upload(&host)?)))
        }
    }
}

/// Waits for every op queued on `device` (a no-op on the CPU): benchmarks call it before
/// stopping a timer.
pub fn synchronize(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(i) => Gpu::get(i)?.synchronize(),
    }
}

/// True when an op with the single input `x` records its autograd op (as `from_op_cuda`
/// decides): host-side backward data (winning offsets) is fetched only then.
pub(crate) fn records_gradient<T: Float>(x: &Tensor<T>) -> bool {
    crate::autograd::is_grad_enabled() && x.requires_grad()
}

/// Launch geometry for `n` independent elements: 256 threads a block, grid-stride loops in
/// the kernels beyond 2^20 blocks.
pub(crate) fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One 256-thread block per row (reductions), up to 2^20 blocks with a grid-stride loop.
pub(crate) fn per_row(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, 1 << 20) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Records `e` for the next fallible op on `gpu` and returns a NaN tensor on the CPU: the
/// way out for ops whose signature has no `Result` (unary functions).
pub(crate) fn poisoned_result<T: Float>(
    gpu: Option<&Gpu>,
    e: Error,
    shape: &crate::Shape,
) -> Tensor<T> {
    eprintln!("contrastive: a GPU op failed: {e}");
    if let Some(g) = gpu {
        g.poison(e);
    }
    Tensor::full(shape.clone(), T::from_f64(f64::NAN))
}
