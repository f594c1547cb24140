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
            });
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
                },
            );
        }
        self.params = params;
        Ok(())
    }
}
