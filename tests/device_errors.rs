//! Asking for a GPU that cannot be used is a clean `Err`, never a panic: in a build without
//! the `cuda` feature, and in a `cuda` build on a machine without a driver or device. Runs
//! everywhere (on a machine with a working GPU it checks the success path instead).

use contrastive::{Device, Tensor};

#[test]
fn a_gpu_is_an_err_or_works_never_a_panic() {
    let x = Tensor::<f32>::ones([2, 3]);
    let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        x.to_device(&Device::Cuda(0))
    }));
    let moved = moved.expect("to_device(Cuda(0)) panicked");
    match moved {
        Ok(g) => {
            assert_eq!(g.device(), Device::Cuda(0));
            assert_eq!(g.to_device(&Device::Cpu).unwrap().to_vec(), vec![1.0; 6]);
        }
        Err(e) => {
            let msg = e.to_string();
            println!("no GPU here: {msg}");
            if cfg!(feature = "cuda") {
                assert!(msg.contains("CUDA") || msg.contains("cuda"), "{msg}");
            } else {
                assert!(msg.contains("--features cuda"), "{msg}");
            }
        }
    }
    assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
    assert!("tpu".parse::<Device>().is_err());
    assert!(Device::Cuda(99).check().is_err());
}

#[test]
fn cpu_to_cpu_is_the_identity_and_keeps_the_gradient_path() {
    let x = Tensor::<f64>::from_f64s(&[1.0, 2.0], [2])
        .unwrap()
        .requires_grad_();
    let y = x
        .to_device(&Device::Cpu)
        .unwrap()
        .square()
        .sum_all()
        .unwrap();
    let g = y.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![2.0, 4.0]);
    assert_eq!(x.device(), Device::Cpu);
}
