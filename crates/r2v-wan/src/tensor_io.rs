//! Reading and writing named f32 tensors in safetensors files: the inputs and outputs of
//! `r2v wan forward`, named after the diffusers forward arguments as in the fixtures.

use crate::WanError;
use burn::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Named tensors as `(shape, values)`.
pub type TensorMap = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of a safetensors file as f32 (f16 and bf16 are widened).
pub fn read(path: &Path) -> Result<TensorMap, WanError> {
    let bytes = std::fs::read(path).map_err(|e| WanError::io(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| WanError::Shape(format!("{}: {e}", path.display())))?;
    let mut out = TensorMap::new();
    for (name, view) in file.tensors() {
        let values = crate::weights::to_f32(view.dtype(), view.data()).ok_or_else(|| {
            WanError::Shape(format!(
                "{}: {name} has dtype {:?}",
                path.display(),
                view.dtype()
            ))
        })?;
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// Writes f32 tensors.
pub fn write(path: &Path, tensors: &TensorMap) -> Result<(), WanError> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            (
                name.clone(),
                shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| WanError::Shape(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| WanError::Shape(format!("{}: {e}", path.display())))
}

/// The tensor `name` with rank `D`, or an error naming it.
pub fn tensor<B: Backend, const D: usize>(
    map: &TensorMap,
    name: &str,
    device: &B::Device,
) -> Result<Tensor<B, D>, WanError> {
    let (shape, values) = map
        .get(name)
        .ok_or_else(|| WanError::Shape(format!("the inputs have no `{name}`")))?;
    let dims: [usize; D] = shape.clone().try_into().map_err(|_| {
        WanError::Shape(format!(
            "`{name}` has {} dimensions, expected {D}",
            shape.len()
        ))
    })?;
    Ok(Tensor::from_data(
        TensorData::new(values.clone(), dims),
        device,
    ))
}

/// A tensor's shape and f32 values.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    let data = t.into_data().convert::<f32>();
    (shape, data.to_vec::<f32>().unwrap_or_default())
}
