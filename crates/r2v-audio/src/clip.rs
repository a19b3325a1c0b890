//! The CLIP towers MMAudio conditions on (open_clip's `DFN5B-CLIP-ViT-H-14-384`, or any
//! open_clip `CLIP` with the same layout), loaded from an open_clip directory:
//! `open_clip_config.json` (`model_cfg`), `open_clip_model.safetensors` and a
//! `tokenizer.json` (`scripts/make-clip-tokenizer.py` writes one from open_clip's BPE).
//!
//! - Image: patches (a stride-`p` convolution without bias; pixels past the last whole
//!   patch are ignored, as PyTorch's convolution does at 384 px with 14-px patches), the
//!   class token, learned positions, `ln_pre`, pre-LN blocks, `ln_post` on the class
//!   token, `proj`, L2-normalised: one `[embed_dim]` feature per frame.
//! - Text: MMAudio's patched `encode_text`: token and position embeddings, the causal
//!   blocks, `ln_final`, L2-normalised per token: `[77, width]` (no pooling, no projection).
//! - Tokens: open_clip's `tokenize`: the prompt cleaned as its `basic_clean` (ftfy, HTML
//!   entities unescaped twice, whitespace collapsed; `r2v_wan::text::clean_prompt`), BPE,
//!   `<start_of_text>` … `<end_of_text>`, cut to 77 with the last kept as `<end_of_text>`,
//!   zero-padded.

use crate::ModelError;
use crate::layers::{Linear, quick_gelu};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use r2v_wan::attention::{Kernel, Scale, attention, merge_heads, split_heads};
use r2v_wan::layers::LayerNorm;
use r2v_wan::weights::Weights;
use serde::Deserialize;
use std::path::Path;

/// open_clip's `vision_cfg`.
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    /// Input size (square).
    pub image_size: usize,
    /// Blocks.
    pub layers: usize,
    /// Width.
    pub width: usize,
    /// Width per head.
    #[serde(default = "default_head_width")]
    pub head_width: usize,
    /// Patch size.
    pub patch_size: usize,
    /// MLP width over `width`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

/// open_clip's `text_cfg`.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Tokens per prompt.
    #[serde(default = "default_context")]
    pub context_length: usize,
    /// Vocabulary size.
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// Width.
    pub width: usize,
    /// Heads.
    pub heads: usize,
    /// Blocks.
    pub layers: usize,
    /// MLP width over `width`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

fn default_head_width() -> usize {
    64
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_context() -> usize {
    77
}
fn default_vocab() -> usize {
    49408
}

/// open_clip's `model_cfg`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// The joint embedding's width.
    pub embed_dim: usize,
    /// QuickGELU (`x·σ(1.702x)`) instead of GELU.
    #[serde(default)]
    pub quick_gelu: bool,
    /// The image tower.
    pub vision_cfg: VisionConfig,
    /// The text tower.
    pub text_cfg: TextConfig,
}

#[derive(Deserialize)]
struct ConfigFile {
    model_cfg: ClipConfig,
}

impl ClipConfig {
    /// Reads `model_cfg` from an `open_clip_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let file: ConfigFile = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        Ok(file.model_cfg)
    }
}

/// open_clip's `ResidualAttentionBlock`: pre-LN attention and MLP.
#[derive(Debug, Clone)]
struct Block<B: Backend> {
    ln_1: LayerNorm<B>,
    qkv: Linear<B>,
    out: Linear<B>,
    ln_2: LayerNorm<B>,
    fc: Linear<B>,
    proj: Linear<B>,
    heads: usize,
}

/// open_clip's LayerNorm (affine, ε 1e-5).
fn ln<B: Backend>(w: &Weights, name: &str, dim: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNorm::load(w, name, dim, 1e-5, device)
}

/// A stack of blocks and its activation.
#[derive(Debug, Clone)]
struct Transformer<B: Backend> {
    blocks: Vec<Block<B>>,
    quick_gelu: bool,
    kernel: Kernel,
}

impl<B: Backend> Transformer<B> {
    fn load(
        w: &Weights,
        name: &str,
        (width, heads, layers, mlp_ratio): (usize, usize, usize, f64),
        (quick_gelu, kernel): (bool, Kernel),
        device: &B::Device,
    ) -> Self {
        let hidden = (width as f64 * mlp_ratio) as usize;
        let blocks = (0..layers)
            .map(|i| {
                let p = format!("{name}.resblocks.{i}");
                Block {
                    ln_1: ln(w, &format!("{p}.ln_1"), width, device),
                    qkv: Linear::from_parts(
                        w.tensor(
                            &format!("{p}.attn.in_proj_weight"),
                            [3 * width, width],
                            device,
                        ),
                        Some(w.tensor(&format!("{p}.attn.in_proj_bias"), [3 * width], device)),
                    ),
                    out: Linear::load(
                        w,
                        &format!("{p}.attn.out_proj"),
                        [width, width],
                        true,
                        device,
                    ),
                    ln_2: ln(w, &format!("{p}.ln_2"), width, device),
                    fc: Linear::load(w, &format!("{p}.mlp.c_fc"), [width, hidden], true, device),
                    proj: Linear::load(
                        w,
                        &format!("{p}.mlp.c_proj"),
                        [hidden, width],
                        true,
                        device,
                    ),
                    heads,
                }
            })
            .collect();
        Self {
            blocks,
            quick_gelu,
            kernel,
        }
    }

    fn forward(&self, mut x: Tensor<B, 3>, mask: Option<Tensor<B, 4>>) -> Tensor<B, 3> {
        for block in &self.blocks {
            let h = block.ln_1.forward(x.clone());
            let qkv = block.qkv.forward(h);
            let width = qkv.dims()[2] / 3;
            let part = |j: usize| split_heads(qkv.clone().narrow(2, j * width, width), block.heads);
            let a = attention(
                self.kernel,
                part(0),
                part(1),
                part(2),
                mask.clone(),
                Scale::Default,
            );
            x = x + block.out.forward(merge_heads(a));
            let h = block.fc.forward(block.ln_2.forward(x.clone()));
            let h = if self.quick_gelu {
                quick_gelu(h)
            } else {
                gelu(h)
            };
            x = x + block.proj.forward(h);
        }
        x
    }
}

/// L2 normalisation over the last dim (`F.normalize`, eps 1e-12).
fn l2_normalize<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let norm = x
        .clone()
        .powi_scalar(2)
        .sum_dim(D - 1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// The image tower.
#[derive(Debug, Clone)]
pub struct ImageTower<B: Backend> {
    patch: Linear<B>,
    class: Tensor<B, 3>,
    positions: Tensor<B, 3>,
    ln_pre: LayerNorm<B>,
    transformer: Transformer<B>,
    ln_post: LayerNorm<B>,
    proj: Tensor<B, 3>,
    patch_size: usize,
    mean_std: ([f32; 3], [f32; 3]),
}

/// OpenAI's CLIP pixel statistics, which MMAudio normalises with.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// See [`CLIP_MEAN`].
pub const CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

impl<B: Backend> ImageTower<B> {
    /// Features `[b, embed_dim]`, L2-normalised, of `pixels` `[b, 3, h, w]` in [0, 1].
    pub fn encode(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        let [b, c, h, w] = pixels.dims();
        let device = pixels.device();
        let (mean, std) = self.mean_std;
        let stat = |v: [f32; 3]| {
            Tensor::<B, 1>::from_data(TensorData::new(v.to_vec(), [3]), &device)
                .reshape([1, 3, 1, 1])
        };
        let x = (pixels - stat(mean)) / stat(std);
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        let x = x
            .narrow(2, 0, gh * p)
            .narrow(3, 0, gw * p)
            .reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, gh * gw, c * p * p]);
        let x = self.patch.forward(x);
        let width = x.dims()[2];
        let x = Tensor::cat(vec![self.class.clone().expand([b, 1, width]), x], 1)
            + self.positions.clone();
        let x = self.transformer.forward(self.ln_pre.forward(x), None);
        let pooled = self.ln_post.forward(x.narrow(1, 0, 1));
        let embed = pooled.matmul(self.proj.clone());
        let dim = embed.dims()[2];
        l2_normalize(embed.reshape([b, dim]))
    }
}

/// The text tower.
#[derive(Debug, Clone)]
pub struct TextTower<B: Backend> {
    tokens: Tensor<B, 2>,
    positions: Tensor<B, 3>,
    transformer: Transformer<B>,
    ln_final: LayerNorm<B>,
}

impl<B: Backend> TextTower<B> {
    /// Per-token features `[b, 77, width]`, L2-normalised, of token ids `[b, 77]`.
    pub fn encode(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, n] = ids.dims();
        let width = self.tokens.dims()[1];
        let x = self
            .tokens
            .clone()
            .select(0, ids.reshape([b * n]))
            .reshape([b, n, width]);
        let x = x + self.positions.clone();
        let device = x.device();
        let mask: Vec<f32> = (0..n * n)
            .map(|i| if i % n > i / n { -1e30 } else { 0.0 })
            .collect();
        let mask = Tensor::<B, 1>::from_data(TensorData::new(mask, [n * n]), &device)
            .reshape([1, 1, n, n]);
        let x = self.transformer.forward(x, Some(mask));
        l2_normalize(self.ln_final.forward(x))
    }
}

/// Both towers.
#[derive(Debug, Clone)]
pub struct Clip<B: Backend> {
    /// The image tower.
    pub image: ImageTower<B>,
    /// The text tower.
    pub text: TextTower<B>,
    /// The model's shapes.
    pub config: ClipConfig,
}

impl<B: Backend> Clip<B> {
    /// Loads both towers from open_clip weights (`logit_scale`, `text_projection` are not
    /// used by MMAudio and marked known).
    pub fn load(w: &Weights, config: &ClipConfig, kernel: Kernel, device: &B::Device) -> Self {
        let v = &config.vision_cfg;
        let grid = v.image_size / v.patch_size;
        let p = v.patch_size;
        let patch = w
            .tensor::<B, 4>("visual.conv1.weight", [v.width, 3, p, p], device)
            .reshape([v.width, 3 * p * p]);
        let image = ImageTower {
            patch: Linear::from_parts(patch, None),
            class: w
                .tensor::<B, 1>("visual.class_embedding", [v.width], device)
                .reshape([1, 1, v.width]),
            positions: w
                .tensor::<B, 2>(
                    "visual.positional_embedding",
                    [grid * grid + 1, v.width],
                    device,
                )
                .unsqueeze(),
            ln_pre: ln(w, "visual.ln_pre", v.width, device),
            transformer: Transformer::load(
                w,
                "visual.transformer",
                (v.width, v.width / v.head_width, v.layers, v.mlp_ratio),
                (config.quick_gelu, kernel),
                device,
            ),
            ln_post: ln(w, "visual.ln_post", v.width, device),
            proj: w
                .tensor::<B, 2>("visual.proj", [v.width, config.embed_dim], device)
                .unsqueeze(),
            patch_size: p,
            mean_std: (CLIP_MEAN, CLIP_STD),
        };
        let t = &config.text_cfg;
        let text = TextTower {
            tokens: w.tensor("token_embedding.weight", [t.vocab_size, t.width], device),
            positions: w
                .tensor::<B, 2>("positional_embedding", [t.context_length, t.width], device)
                .unsqueeze(),
            transformer: Transformer::load(
                w,
                "transformer",
                (t.width, t.heads, t.layers, t.mlp_ratio),
                (config.quick_gelu, kernel),
                device,
            ),
            ln_final: ln(w, "ln_final", t.width, device),
        };
        for unused in ["logit_scale", "text_projection"] {
            w.mark_prefix_known(unused);
        }
        Self {
            image,
            text,
            config: config.clone(),
        }
    }

    /// Text features `[1, 77, width]` of a prompt.
    pub fn encode_prompt(
        &self,
        tokenizer: &ClipTokenizer,
        prompt: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let ids = tokenizer.tokenize(prompt)?;
        let n = ids.len();
        let ids = Tensor::<B, 1, Int>::from_data(
            TensorData::new(ids.into_iter().map(i64::from).collect::<Vec<_>>(), [n]),
            device,
        );
        Ok(self.text.encode(ids.reshape([1, n])))
    }
}

/// open_clip's `tokenize` over a `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    context: usize,
}

/// `<start_of_text>`.
pub const SOT: u32 = 49406;
/// `<end_of_text>`.
pub const EOT: u32 = 49407;

impl ClipTokenizer {
    /// Loads a `tokenizer.json` for `context` tokens.
    pub fn load(path: &Path, context: usize) -> Result<Self, ModelError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        Ok(Self { inner, context })
    }

    /// The `context` ids of a prompt.
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>, ModelError> {
        let clean = r2v_wan::text::clean_prompt(prompt);
        let encoding = self
            .inner
            .encode(clean.as_str(), false)
            .map_err(|e| ModelError::Config(format!("tokenizer: {e}")))?;
        let mut ids = Vec::with_capacity(self.context);
        ids.push(SOT);
        ids.extend_from_slice(encoding.get_ids());
        ids.push(EOT);
        if ids.len() > self.context {
            ids.truncate(self.context);
            ids[self.context - 1] = EOT;
        }
        ids.resize(self.context, 0);
        Ok(ids)
    }
}
