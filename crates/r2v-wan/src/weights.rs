//! Weight loading: safetensors files (one, or the shards of a diffusers index),
//! memory-mapped, in f32, f16 or bf16, under diffusers names.
//!
//! Two key layouts are accepted and both end up under diffusers' names:
//! - diffusers (`blocks.0.attn1.to_q.weight`, …), as written by `save_pretrained`;
//! - official / ComfyUI single files (`blocks.0.self_attn.q.weight`, optionally under
//!   `model.diffusion_model.`), renamed by [`official_to_diffusers`] (MODEL.md §1.2):
//!
//! | official | diffusers |
//! |---|---|
//! | `self_attn.{q,k,v,o}` / `cross_attn.{q,k,v,o}` | `attn1.{to_q,to_k,to_v,to_out.0}` / `attn2.…` |
//! | `cross_attn.{k_img,v_img,norm_k_img}` | `attn2.{add_k_proj,add_v_proj,norm_added_k}` |
//! | `ffn.0` / `ffn.2` | `ffn.net.0.proj` / `ffn.net.2` |
//! | `blocks.N.modulation` / `head.modulation` | `blocks.N.scale_shift_table` / `scale_shift_table` |
//! | `norm3` (the affine cross-attention norm) | `norm2` |
//! | `head.head` | `proj_out` |
//! | `time_embedding.{0,2}` / `time_projection.1` | `condition_embedder.time_embedder.linear_{1,2}` / `condition_embedder.time_proj` |
//! | `text_embedding.{0,2}` | `condition_embedder.text_embedder.linear_{1,2}` |
//! | `img_emb.proj.{0,1,3,4}` | `condition_embedder.image_embedder.{norm1,ff.net.0.proj,ff.net.2,norm2}` |
//! | `vace_blocks.N.{before_proj,after_proj}` | `vace_blocks.N.{proj_in,proj_out}` |
//!
//! Every tensor a model asks for is checked for shape; the ones it never asks for are
//! "unexpected". [`Weights::finish`] reports all missing, misshapen and unexpected keys
//! by name in one error.

use crate::lora::Lora;
use crate::{Precision, WanError};
use burn::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where a tensor lives: file index, dtype, shape, byte range.
struct Entry {
    file: usize,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The tensors of a checkpoint, by diffusers name.
pub struct Weights {
    maps: Vec<memmap2::Mmap>,
    entries: BTreeMap<String, Entry>,
    used: RefCell<BTreeSet<String>>,
    problems: RefCell<Vec<String>>,
    /// Only names under this prefix belong to the model being loaded (e.g. `transformer.`).
    prefix: String,
    /// The precision tensors are handed out in.
    precision: Precision,
    /// LoRAs merged into the tensors as they are handed out.
    loras: Vec<Lora>,
    /// Name segments whose tensors stay f32 whatever the precision (diffusers'
    /// `_keep_in_fp32_modules`).
    keep_f32: Vec<String>,
}

impl Weights {
    /// Opens a `.safetensors` file, a diffusers `*.safetensors.index.json`, or a directory
    /// holding either.
    pub fn open(path: &Path) -> Result<Self, WanError> {
        let files = weight_files(path)?;
        let mut maps = Vec::with_capacity(files.len());
        let mut entries = BTreeMap::new();
        for (index, file) in files.iter().enumerate() {
            let handle = std::fs::File::open(file).map_err(|e| WanError::io(file, e))?;
            // SAFETY: the file is opened read-only and not modified while mapped.
            let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(|e| WanError::io(file, e))?;
            let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map)
                .map_err(|e| WanError::Weights(format!("{}: {e}", file.display())))?;
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                entries.insert(
                    name.clone(),
                    Entry {
                        file: index,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: 8 + header_len + start,
                        end: 8 + header_len + end,
                    },
                );
            }
            maps.push(map);
        }
        let entries = official_to_diffusers(entries);
        Ok(Self {
            maps,
            entries,
            used: RefCell::default(),
            problems: RefCell::default(),
            prefix: String::new(),
            precision: Precision::F32,
            loras: Vec::new(),
            keep_f32: Vec::new(),
        })
    }

    /// Restricts the model to names under `prefix` (a pipeline file holding `transformer.` and `vae.`).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Hands tensors out in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Keeps tensors in f32 whose name has one of `segments` as a dot-separated part
    /// (diffusers' `_keep_in_fp32_modules`: `blocks.0.norm2.weight` matches `norm2`).
    pub fn keeping_f32(mut self, segments: &[&str]) -> Self {
        self.keep_f32 = segments.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The precision `name` is handed out in.
    fn precision_of(&self, name: &str) -> Precision {
        if name
            .split('.')
            .any(|part| self.keep_f32.iter().any(|k| k == part))
        {
            Precision::F32
        } else {
            self.precision
        }
    }

    /// Merges `lora` into the tensors it targets as they are read.
    pub fn with_lora(mut self, lora: Lora) -> Self {
        self.loras.push(lora);
        self
    }

    /// The precision tensors are handed out in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Parameters, bytes and storage dtype(s) of the tensors under the prefix.
    pub fn summary(&self) -> (u64, u64, String) {
        let mut params = 0u64;
        let mut bytes = 0u64;
        let mut dtypes = BTreeSet::new();
        for (_, entry) in self
            .entries
            .iter()
            .filter(|(n, _)| n.starts_with(&self.prefix))
        {
            params += entry.shape.iter().product::<usize>() as u64;
            bytes += (entry.end - entry.start) as u64;
            dtypes.insert(format!("{:?}", entry.dtype).to_lowercase());
        }
        (
            params,
            bytes,
            dtypes.into_iter().collect::<Vec<_>>().join("+"),
        )
    }

    /// The parameter count of the tensor `name`, if it exists.
    pub fn count(&self, name: &str) -> Option<u64> {
        self.entries
            .get(&format!("{}{name}", self.prefix))
            .map(|e| e.shape.iter().product::<usize>() as u64)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(&format!("{}{name}", self.prefix))
    }

    /// The tensor `name` with exactly `shape`, in the precision it is handed out in; a
    /// missing or misshapen tensor is recorded (and zeros returned) so that every problem
    /// is reported at once. The values are converted on the host and uploaded once in
    /// their final dtype (bf16 checkpoint bytes as they are), except when a LoRA changes
    /// the tensor: that merge runs in f32 on the device before the cast.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Tensor<B, D> {
        let full = format!("{}{name}", self.prefix);
        let precision = self.precision_of(name);
        let zeros = || Tensor::zeros(shape, (device, precision.dtype().into()));
        let Some(entry) = self.entries.get(&full) else {
            self.problems
                .borrow_mut()
                .push(format!("missing key {full} (expected shape {shape:?})"));
            return zeros();
        };
        self.used.borrow_mut().insert(full.clone());
        if entry.shape != shape {
            self.problems.borrow_mut().push(format!(
                "key {full} has shape {:?}, expected {shape:?}",
                entry.shape
            ));
            return zeros();
        }
        let bytes = &self.maps[entry.file][entry.start..entry.end];
        let merged = self.loras.iter().any(|l| l.changes(name));
        let upload = if merged { Precision::F32 } else { precision };
        let Some(data) = host_data(entry.dtype, bytes, shape.to_vec(), upload) else {
            self.problems.borrow_mut().push(format!(
                "key {full} has dtype {:?}; f32, f16 and bf16 are supported",
                entry.dtype
            ));
            return zeros();
        };
        let mut tensor = Tensor::from_data(data, (device, upload.dtype().into()));
        for lora in &self.loras {
            tensor = match lora.apply(name, tensor) {
                Ok(merged) => merged,
                Err(problem) => {
                    self.problems.borrow_mut().push(problem);
                    return zeros();
                }
            };
        }
        precision.apply(tensor)
    }

    /// Records `name` as used with exactly `shape`, without reading it (a table that is
    /// read later by [`Weights::rows`], or a tied duplicate).
    pub fn expect_shape(&self, name: &str, shape: &[usize]) {
        let full = format!("{}{name}", self.prefix);
        match self.entries.get(&full) {
            None => self
                .problems
                .borrow_mut()
                .push(format!("missing key {full} (expected shape {shape:?})")),
            Some(entry) if entry.shape != shape => self.problems.borrow_mut().push(format!(
                "key {full} has shape {:?}, expected {shape:?}",
                entry.shape
            )),
            Some(_) => {
                self.used.borrow_mut().insert(full);
            }
        }
    }

    /// A one-value tensor (shape `[]` or `[1]`) as f32; a missing or larger one is recorded
    /// and 0 returned.
    pub fn scalar(&self, name: &str) -> f32 {
        let full = format!("{}{name}", self.prefix);
        let value = self.entries.get(&full).and_then(|entry| {
            let count: usize = entry.shape.iter().product();
            let bytes = &self.maps[entry.file][entry.start..entry.end];
            (count == 1).then(|| to_f32(entry.dtype, bytes)).flatten()
        });
        match value {
            Some(values) => {
                self.used.borrow_mut().insert(full);
                values[0]
            }
            None => {
                self.problems.borrow_mut().push(format!(
                    "missing or non-scalar key {full} (expected one f32 value)"
                ));
                0.0
            }
        }
    }

    /// Records every tensor under `prefix` as known without reading it (the half of a
    /// checkpoint a model does not run, such as a VAE's encoder when only decoding).
    pub fn mark_prefix_known(&self, prefix: &str) {
        let full = format!("{}{prefix}", self.prefix);
        let mut used = self.used.borrow_mut();
        for name in self.entries.keys().filter(|n| n.starts_with(&full)) {
            used.insert(name.clone());
        }
    }

    /// Rows of a 2-D tensor as f32, concatenated in the order asked: an embedding lookup
    /// that reads only those rows from the mapped file.
    pub fn rows(&self, name: &str, rows: &[usize]) -> Result<Vec<f32>, WanError> {
        let full = format!("{}{name}", self.prefix);
        let entry = self
            .entries
            .get(&full)
            .ok_or_else(|| WanError::Weights(format!("missing key {full}")))?;
        let [count, width] = entry.shape[..] else {
            return Err(WanError::Weights(format!("key {full} is not 2-D")));
        };
        let size = entry.dtype.bitsize() / 8;
        let mut out = Vec::with_capacity(rows.len() * width);
        for &row in rows {
            if row >= count {
                return Err(WanError::Shape(format!(
                    "row {row} of {full} (has {count})"
                )));
            }
            let start = entry.start + row * width * size;
            let bytes = &self.maps[entry.file][start..start + width * size];
            let values = to_f32(entry.dtype, bytes).ok_or_else(|| {
                WanError::Weights(format!("key {full} has dtype {:?}", entry.dtype))
            })?;
            out.extend(values);
        }
        Ok(out)
    }

    /// `Err` naming every missing, misshapen and unexpected key so far.
    pub fn check(&self) -> Result<(), WanError> {
        let used = self.used.borrow();
        let mut problems = self.problems.borrow().clone();
        for name in self
            .entries
            .keys()
            .filter(|n| n.starts_with(&self.prefix) && !used.contains(*n))
        {
            problems.push(format!("unexpected key {name}"));
        }
        for target in self.loras.iter().flat_map(Lora::targets) {
            if !used.contains(&format!("{}{target}", self.prefix)) {
                problems.push(format!(
                    "the LoRA changes {target}, which this model does not have"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WanError::Weights(problems.join("; ")))
        }
    }

    /// Ends loading: `Err` names every missing, misshapen and unexpected key.
    pub fn finish(self) -> Result<(), WanError> {
        self.check()
    }
}

/// A tensor's stored bytes as host data in `precision`: bf16 bytes go as they are to a
/// bf16 tensor; everything else is widened to f32 and, for bf16, rounded to nearest even
/// (as `torch.Tensor.to(torch.bfloat16)`). `None` for dtypes other than f32, f16, bf16.
fn host_data(
    dtype: safetensors::Dtype,
    bytes: &[u8],
    shape: Vec<usize>,
    precision: Precision,
) -> Option<TensorData> {
    Some(match (precision, dtype) {
        (Precision::Bf16, safetensors::Dtype::BF16) => {
            TensorData::from_bytes_vec(bytes.to_vec(), shape, burn::tensor::DType::BF16)
        }
        (Precision::Bf16, safetensors::Dtype::F32 | safetensors::Dtype::F16) => {
            let values: Vec<half::bf16> = to_f32(dtype, bytes)?
                .into_iter()
                .map(half::bf16::from_f32)
                .collect();
            TensorData::new(values, shape)
        }
        (
            Precision::F32,
            safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16,
        ) => TensorData::new(to_f32(dtype, bytes)?, shape),
        _ => return None,
    })
}

/// Little-endian f32, f16, bf16, i64 or u8 values as f32; `None` for other dtypes.
pub fn to_f32(dtype: safetensors::Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        safetensors::Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        safetensors::Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        safetensors::Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        safetensors::Dtype::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        _ => return None,
    })
}

/// The safetensors files behind `path`.
fn weight_files(path: &Path) -> Result<Vec<PathBuf>, WanError> {
    if path.is_file() {
        if path.to_string_lossy().ends_with(".index.json") {
            let text = std::fs::read_to_string(path).map_err(|e| WanError::io(path, e))?;
            let index: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| WanError::Weights(format!("{}: {e}", path.display())))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            let shards: BTreeSet<String> = index["weight_map"]
                .as_object()
                .ok_or_else(|| WanError::Weights(format!("{} has no weight_map", path.display())))?
                .values()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| WanError::io(path, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    found.sort();
    if let Some(index) = found
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".safetensors.index.json"))
    {
        return weight_files(index);
    }
    let files: Vec<PathBuf> = found
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    if files.is_empty() {
        return Err(WanError::Weights(format!(
            "no .safetensors files in {}",
            path.display()
        )));
    }
    Ok(files)
}

/// Renames official / ComfyUI keys to diffusers keys; diffusers keys pass through.
fn official_to_diffusers(entries: BTreeMap<String, Entry>) -> BTreeMap<String, Entry> {
    // Wan's own block names; other models' `self_attn` (Synchformer's pooling layer) are not it.
    let official = entries.keys().any(|k| {
        ((k.starts_with("blocks.") || k.starts_with("vace_blocks.")) && k.contains(".self_attn."))
            || k.starts_with("head.head")
            || k.contains("diffusion_model.")
    });
    if !official {
        return entries;
    }
    entries
        .into_iter()
        .map(|(k, v)| (rename_official(&k), v))
        .collect()
}

/// One official key under its diffusers name.
pub fn rename_official(key: &str) -> String {
    let key = key.strip_prefix("model.diffusion_model.").unwrap_or(key);
    const PARTS: [(&str, &str); 22] = [
        (".self_attn.q.", ".attn1.to_q."),
        (".self_attn.k.", ".attn1.to_k."),
        (".self_attn.v.", ".attn1.to_v."),
        (".self_attn.o.", ".attn1.to_out.0."),
        (".self_attn.norm_q.", ".attn1.norm_q."),
        (".self_attn.norm_k.", ".attn1.norm_k."),
        (".cross_attn.q.", ".attn2.to_q."),
        (".cross_attn.k.", ".attn2.to_k."),
        (".cross_attn.v.", ".attn2.to_v."),
        (".cross_attn.o.", ".attn2.to_out.0."),
        (".cross_attn.norm_q.", ".attn2.norm_q."),
        (".cross_attn.norm_k.", ".attn2.norm_k."),
        (".cross_attn.k_img.", ".attn2.add_k_proj."),
        (".cross_attn.v_img.", ".attn2.add_v_proj."),
        (".cross_attn.norm_k_img.", ".attn2.norm_added_k."),
        (".ffn.0.", ".ffn.net.0.proj."),
        (".ffn.2.", ".ffn.net.2."),
        (".norm3.", ".norm2."),
        (".before_proj.", ".proj_in."),
        (".after_proj.", ".proj_out."),
        (
            "img_emb.proj.0.",
            "condition_embedder.image_embedder.norm1.",
        ),
        (
            "img_emb.proj.4.",
            "condition_embedder.image_embedder.norm2.",
        ),
    ];
    const WHOLE: [(&str, &str); 9] = [
        ("head.head.", "proj_out."),
        (
            "time_embedding.0.",
            "condition_embedder.time_embedder.linear_1.",
        ),
        (
            "time_embedding.2.",
            "condition_embedder.time_embedder.linear_2.",
        ),
        ("time_projection.1.", "condition_embedder.time_proj."),
        (
            "text_embedding.0.",
            "condition_embedder.text_embedder.linear_1.",
        ),
        (
            "text_embedding.2.",
            "condition_embedder.text_embedder.linear_2.",
        ),
        (
            "img_emb.proj.1.",
            "condition_embedder.image_embedder.ff.net.0.proj.",
        ),
        (
            "img_emb.proj.3.",
            "condition_embedder.image_embedder.ff.net.2.",
        ),
        (
            "img_emb.emb_pos",
            "condition_embedder.image_embedder.pos_embed",
        ),
    ];
    if key == "head.modulation" {
        return "scale_shift_table".to_owned();
    }
    if let Some(block) = key.strip_suffix(".modulation") {
        return format!("{block}.scale_shift_table");
    }
    for (from, to) in WHOLE {
        if let Some(rest) = key.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    let mut out = format!(".{key}");
    for (from, to) in PARTS {
        if out.contains(from) {
            out = out.replacen(from, to, 1);
        }
    }
    out[1..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::rename_official;

    #[test]
    fn official_names_become_diffusers_names() {
        let cases = [
            ("blocks.3.self_attn.q.weight", "blocks.3.attn1.to_q.weight"),
            ("blocks.3.cross_attn.o.bias", "blocks.3.attn2.to_out.0.bias"),
            (
                "blocks.3.cross_attn.norm_k_img.weight",
                "blocks.3.attn2.norm_added_k.weight",
            ),
            ("blocks.3.ffn.0.weight", "blocks.3.ffn.net.0.proj.weight"),
            ("blocks.3.norm3.bias", "blocks.3.norm2.bias"),
            ("blocks.3.modulation", "blocks.3.scale_shift_table"),
            ("head.modulation", "scale_shift_table"),
            ("model.diffusion_model.head.head.weight", "proj_out.weight"),
            (
                "time_projection.1.weight",
                "condition_embedder.time_proj.weight",
            ),
            (
                "vace_blocks.0.before_proj.weight",
                "vace_blocks.0.proj_in.weight",
            ),
            (
                "img_emb.proj.3.bias",
                "condition_embedder.image_embedder.ff.net.2.bias",
            ),
            ("patch_embedding.weight", "patch_embedding.weight"),
        ];
        for (official, diffusers) in cases {
            assert_eq!(rename_official(official), diffusers, "{official}");
        }
    }
}
