//! The one way kernels are launched: [`launch!`](crate::backend::cuda::launch) fetches the
//! compiled function, pushes the arguments in order and launches on the device's stream.

/// `launch!(gpu, T, "kernel", config, args...)`: every argument a reference to a live value
/// (scalars bound to locals, buffers through `slice()`/`slice_mut()`), in the order and with
/// the types of the kernel's C signature in `kernels/*.cu`.
macro_rules! launch {
    ($gpu:expr, $t:ty, $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let function = $gpu.function::<$t>($name)?;
        let mut builder = $gpu.stream.launch_builder(&function);
        $( cudarc::driver::PushKernelArg::arg(&mut builder, $arg); )+
        // SAFETY: the arguments match the kernel's C signature in order and type (each call
        // site passes them as the .cu file declares them), every device pointer comes from a
        // live `CudaSlice` of this device, and each kernel only touches indices below the
        // element counts passed with it, which the caller sized the buffers for.
        unsafe { builder.launch($cfg) }
            .map(drop)
            .map_err($crate::backend::cuda::cuda_err($name))
    }};
}
pub(crate) use launch;
