//! Loading named tensors into a module: every parameter and buffer must be matched by exactly one
//! tensor of the same name and shape. All problems are collected and reported together before
//! anything is changed, so a failed load leaves the module as it was.

use super::Module;
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::collections::BTreeMap;

/// See [`Module::load_state`].
pub(crate) fn load_state<T: Float, M: Module<T> + ?Sized>(
    module: &mut M,
    tensors: &[(String, Tensor<T>)],
) -> Result<()> {
    let mut given: BTreeMap<&str, &Tensor<T>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, t) in tensors {
        if given.insert(name.as_str(), t).is_some() {
            problems.push(format!("tensor `{name}` is given twice"));
        }
    }
    let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut record = |name: &str, t: &Tensor<T>| {
        expected.insert(name.to_string(), t.dims().to_vec());
    };
    module.visit_parameters("", &mut record);
    module.visit_buffers("", &mut record);
    for (name, dims) in &expected {
        match given.get(name.as_str()) {
            None => problems.push(format!("missing tensor `{name}` (shape {dims:?})")),
            Some(t) if t.dims() != dims.as_slice() => problems.push(format!(
                "tensor `{name}` has shape {:?}, the model expects {dims:?}",
                t.dims()
            )),
            Some(_) => {}
        }
    }
    for name in given.keys() {
        if !expected.contains_key(*name) {
            problems.push(format!(
                "unexpected tensor `{name}` (the model has no such entry)"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid("load_state", problems.join("; ")));
    }
    // Every name and shape has been checked, so `set_data` cannot fail below; the first error
    // is still kept rather than ignored.
    let mut failure = None;
    let mut assign = |name: &str, t: &mut Tensor<T>| {
        if let Some(src) = given.get(name)
            && let Err(e) = t.set_data(src.to_vec())
        {
            failure.get_or_insert(e);
        }
    };
    module.visit_parameters_mut("", &mut assign);
    module.visit_buffers_mut("", &mut assign);
    failure.map_or(Ok(()), Err)
}
