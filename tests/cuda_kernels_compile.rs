//! Compiles every CUDA kernel for f32 and f64 with NVRTC, which needs no GPU: the check of
//! the CUDA C on machines without one (CI installs libnvrtc from pip, see docs/cuda.md).
//! Where libnvrtc cannot be loaded the test prints that it skipped, and passes.
#![cfg(feature = "cuda")]

use contrastive::DType;
use contrastive::backend::cuda::kernels::{KERNELS, compile_check};

#[test]
fn every_kernel_compiles_for_f32_and_f64() {
    for dtype in [DType::F32, DType::F64] {
        let ptx = match compile_check(dtype) {
            Ok(ptx) => ptx,
            Err(e) if e.to_string().contains("not found") => {
                println!("skipped every_kernel_compiles_for_f32_and_f64: {e}");
                return;
            }
            Err(e) => panic!("{dtype:?}: {e}"),
        };
        for name in KERNELS {
            assert!(
                ptx.contains(&format!(".entry {name}(")),
                "{dtype:?}: kernel {name} missing from the PTX"
            );
        }
        println!(
            "{dtype:?}: {} kernels, {} bytes of PTX",
            KERNELS.len(),
            ptx.len()
        );
    }
}
