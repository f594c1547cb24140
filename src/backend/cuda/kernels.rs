//! The CUDA C sources of every kernel and their compilation with NVRTC. The sources are one
//! set written against an element type `T`; each dtype gets its own module by prefixing
//! `#define T float` (or `double`), so there is no f32/f64 copy of any kernel. NVRTC needs no
//! GPU: [`compile_check`] compiles everything on a machine without one (the test
//! `tests/cuda_kernels_compile.rs` does, where libnvrtc is available).

use super::CudaFloat;
use crate::error::{Error, Result};
use crate::tensor::{DType, Float};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

/// Every kernel file, in dependency order (norm.cu uses reduce.cu's block reductions).
pub const SOURCES: [(&str, &str); 7] = [
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("movement.cu", include_str!("kernels/movement.cu")),
    ("reduce.cu", include_str!("kernels/reduce.cu")),
    ("conv.cu", include_str!("kernels/conv.cu")),
    ("norm.cu", include_str!("kernels/norm.cu")),
    ("similarity.cu", include_str!("kernels/similarity.cu")),
    ("optim.cu", include_str!("kernels/optim.cu")),
];

/// Every `extern "C"` kernel the Rust side launches (the compile test checks each is in the
/// PTX).
pub const KERNELS: &[&str] = &[
    "unary_fwd",
    "unary_bwd",
    "binary_fwd",
    "binary_partial",
    "fill",
    "finite_or_zero",
    "strided_copy",
    "index_select_fwd",
    "index_select_bwd",
    "take",
    "scatter_distinct",
    "scatter_sorted",
    "where_fwd",
    "where_bwd",
    "sum_rows",
    "sum_inner",
    "extremum",
    "lse_rows",
    "im2col",
    "col2im",
    "max_pool_fwd",
    "avg_pool_fwd",
    "avg_pool_bwd",
    "bn_stats",
    "bn_apply",
    "bn_bwd_sums",
    "bn_bwd_dx",
    "sim_scale_mask",
    "sim_weights",
    "sgd_step",
    "adam_step",
    "lars_norms",
    "lars_trust",
    "lars_step",
];

/// The virtual architecture the PTX targets: the oldest CUDA 13 supports (Turing), so that
/// the driver can compile it for any GPU CUDA 13 runs on (sm_90 on the H100/H200).
pub const ARCH: &str = "compute_75";

/// The complete source for element type `c_type` (`float` or `double`).
pub fn source(c_type: &str) -> String {
    let neg_inf = match c_type {
        "float" => "(-__int_as_float(0x7f800000))",
        _ => "(-__longlong_as_double(0x7ff0000000000000LL))",
    };
    let mut s = format!(
        "// Generated: the kernels of src/backend/cuda/kernels/ for T = {c_type}.\n\
         #define T {c_type}\n\
         #define NEG_INF {neg_inf}\n\
         typedef long long i64;\n\
         #define FOR_EACH(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; \
         i < (i64)(n); i += (i64)blockDim.x * gridDim.x)\n"
    );
    for (name, body) in SOURCES {
        s.push_str(&format!("\n// ---- {name} ----\n"));
        s.push_str(body);
    }
    s
}

/// PTX of every kernel for `T`.
pub(crate) fn compile<T: Float>() -> Result<Ptx> {
    compile_for(<T as CudaFloat>::C_TYPE)
}

fn compile_for(c_type: &str) -> Result<Ptx> {
    let opts = CompileOptions {
        arch: Some(ARCH),
        // IEEE division and square root, no flush-to-zero: results comparable with the CPU.
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        name: Some(format!("contrastive_{c_type}.cu")),
        ..Default::default()
    };
    compile_ptx_with_opts(source(c_type), opts).map_err(|e| Error::Cuda {
        op: "nvrtc",
        message: format!("compiling the {c_type} kernels failed: {e:?}"),
    })
}

/// Compiles every kernel for `dtype` with NVRTC alone (no driver, no GPU) and returns the
/// PTX. An `Err` when libnvrtc cannot be loaded or the sources do not compile.
pub fn compile_check(dtype: DType) -> Result<String> {
    // SAFETY: the probe only tries to dlopen libnvrtc under its candidate names.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::Cuda {
            op: "nvrtc",
            message: "libnvrtc.so.13 not found (set LD_LIBRARY_PATH, see docs/cuda.md)".into(),
        });
    }
    let ptx = match dtype {
        DType::F32 => compile_for("float")?,
        DType::F64 => compile_for("double")?,
    };
    Ok(ptx.to_src())
}
