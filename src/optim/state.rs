//! Per-parameter optimiser state keyed by parameter name: a step count and a few buffers of the
//! parameter's shape (momentum, first and second moments), with export to and import from
//! named tensors (`{param}.{slot}`, `{param}.step`) so that a checkpoint can store them.

use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::collections::BTreeMap;

/// One parameter's state.
#[derive(Debug, Clone)]
pub(crate) struct Entry<T: Float> {
    pub dims: Vec<usize>,
    /// Updates applied so far (0 before the first).
    pub step: u64,
    /// One buffer per slot, each with the parameter's number of elements.
    pub bufs: Vec<Vec<T>>,
    /// The same buffers on the parameter's GPU while it lives there (`bufs` is then empty):
    /// the fused updates read and write them in place.
    #[cfg(feature = "cuda")]
    pub device: Vec<Tensor<T>>,
}

/// The state of every parameter an optimiser has updated.
#[derive(Debug, Clone, Default)]
pub(crate) struct State<T: Float> {
    params: BTreeMap<String, Entry<T>>,
}

impl<T: Float> State<T> {
    pub fn new() -> Self {
        State {
            params: BTreeMap::new(),
        }
    }

    /// The entry of `name`, created with zero buffers on first use. Fails when a stored entry
    /// (e.g. loaded from a checkpoint) does not fit the parameter.
    pub fn entry(
        &mut self,
        op: &'static str,
        name: &str,
        dims: &[usize],
        slots: usize,
    ) -> Result<&mut Entry<T>> {
        let numel: usize = dims.iter().product();
        let e = self
            .params
            .entry(name.to_string())
            .or_insert_with(|| Entry {
                dims: dims.to_vec(),
                step: 0,
                bufs: vec![vec![T::ZERO; numel]; slots],
                #[cfg(feature = "cuda")]
                device: Vec::new(),
            });
        #[cfg(feature = "cuda")]
        if !e.device.is_empty() {
            // The parameter moved back to the CPU: its state follows.
            e.bufs = e
                .device
                .drain(..)
                .map(|t| t.try_to_vec())
                .collect::<Result<_>>()?;
        }
        if slots == 0 && e.bufs.is_empty() {
            // A slot-less entry (plain SGD) only counts steps; an imported one has no shape.
            e.dims = dims.to_vec();
        }
        if e.dims != dims || e.bufs.len() != slots {
            return Err(Error::invalid(
                op,
                format!(
                    "state of parameter `{name}` has shape {:?} and {} buffers, the parameter \
                     has shape {dims:?} and needs {slots}",
                    e.dims,
                    e.bufs.len()
                ),
            ));
        }
        Ok(e)
    }

    /// [`State::entry`] for a parameter on a GPU: the buffers are created there (zeros), or
    /// moved there once (state from a checkpoint or from steps on the CPU).
    #[cfg(feature = "cuda")]
    pub fn device_entry(
        &mut self,
        op: &'static str,
        name: &str,
        p: &Tensor<T>,
        slots: usize,
    ) -> Result<&mut Entry<T>> {
        use std::collections::btree_map::Entry as Slot;
        let dims = p.dims();
        let e = match self.params.entry(name.to_string()) {
            Slot::Occupied(o) => o.into_mut(),
            Slot::Vacant(v) => v.insert(Entry {
                dims: dims.to_vec(),
                step: 0,
                bufs: Vec::new(),
                device: (0..slots)
                    .map(|_| crate::backend::cuda::optim::zeros_like(p))
                    .collect::<Result<_>>()?,
            }),
        };
        if slots == 0 && e.bufs.is_empty() && e.device.is_empty() {
            e.dims = dims.to_vec();
        }
        let count = e.bufs.len().max(e.device.len());
        if e.dims != dims || count != slots {
            return Err(Error::invalid(
                op,
                format!(
                    "state of parameter `{name}` has shape {:?} and {count} buffers, the \
                     parameter has shape {dims:?} and needs {slots}",
                    e.dims
                ),
            ));
        }
        let device = p.device();
        if !e.bufs.is_empty() {
            e.device = e
                .bufs
                .drain(..)
                .map(|b| Tensor::from_vec(b, dims.to_vec())?.to_device(&device))
                .collect::<Result<_>>()?;
        }
        for t in &mut e.device {
            if t.device() != device {
                *t = t.to_device(&device)?;
            }
        }
        Ok(e)
    }

    /// `{param}.{slot}` tensors of the parameter's shape and a rank-0 `{param}.step` (exact in
    /// `f32` up to 2²⁴ steps), sorted by name.
    pub fn export(&self, slots: &[&str]) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        for (name, e) in &self.params {
            out.push((
                format!("{name}.step"),
                Tensor::scalar(T::from_f64(e.step as f64)),
            ));
            for (slot, buf) in slots.iter().zip(&e.bufs) {
                let t = Tensor::from_vec(buf.clone(), e.dims.clone())
                    .expect("a buffer always has its parameter's number of elements");
                out.push((format!("{name}.{slot}"), t));
            }
            #[cfg(feature = "cuda")]
            for (slot, t) in slots.iter().zip(&e.device) {
                // Checkpoints are written from host memory: a copy there (or, should the copy
                // fail, the GPU tensor, whose values then read as NaN with the error printed).
                let t = t
                    .to_device(&crate::Device::Cpu)
                    .unwrap_or_else(|_| t.clone());
                out.push((format!("{name}.{slot}"), t));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Replaces the state with the tensors `export` wrote. Every parameter needs its `step` and
    /// every slot, all slots of one shape; unknown names are errors.
    pub fn import(
        &mut self,
        op: &'static str,
        slots: &[&str],
        tensors: &[(String, Tensor<T>)],
    ) -> Result<()> {
        type Parts<T> = (Option<u64>, Vec<Option<Tensor<T>>>);
        let mut parts: BTreeMap<&str, Parts<T>> = BTreeMap::new();
        for (full, t) in tensors {
            let (param, slot) = full.rsplit_once('.').ok_or_else(|| {
                Error::invalid(
                    op,
                    format!("state tensor `{full}` is not named `param.slot`"),
                )
            })?;
            let p = parts
                .entry(param)
                .or_insert_with(|| (None, vec![None; slots.len()]));
            if slot == "step" {
                let v = t.item()?.to_f64();
                if !(v >= 0.0 && v.fract() == 0.0) {
                    return Err(Error::invalid(
                        op,
                        format!("`{full}` = {v} is not a step count"),
                    ));
                }
                p.0 = Some(v as u64);
            } else if let Some(i) = slots.iter().position(|s| *s == slot) {
                p.1[i] = Some(t.clone());
            } else {
                return Err(Error::invalid(
                    op,
                    format!(
                        "unknown state tensor `{full}` (slots: step, {})",
                        slots.join(", ")
                    ),
                ));
            }
        }
        let mut params = BTreeMap::new();
        for (param, (step, bufs)) in parts {
            let step = step.ok_or_else(|| {
                Error::invalid(op, format!("state of `{param}` has no `{param}.step`"))
            })?;
            let mut dims: Option<Vec<usize>> = None;
            let mut data = Vec::with_capacity(slots.len());
            for (slot, buf) in slots.iter().zip(bufs) {
                let t = buf.ok_or_else(|| {
                    Error::invalid(op, format!("state of `{param}` has no `{param}.{slot}`"))
                })?;
                match &dims {
                    Some(d) if d.as_slice() != t.dims() => {
                        return Err(Error::invalid(
                            op,
                            format!(
                                "`{param}.{slot}` has shape {:?}, other slots {d:?}",
                                t.dims()
                            ),
                        ));
                    }
                    _ => dims = Some(t.dims().to_vec()),
                }
                data.push(t.to_vec());
            }
            params.insert(
                param.to_string(),
                Entry {
                    // A slot-less optimiser (plain SGD) keeps only the count; its shape is
                    // learned on the next step.
                    dims: dims.unwrap_or_default(),
                    step,
                    bufs: data,
                    #[cfg(feature = "cuda")]
                    device: Vec::new(),
                },
            );
        }
        self.params = params;
        Ok(())
    }
}
