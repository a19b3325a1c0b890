//! Every DiT fixture in `tests/fixtures/` matches diffusers within MODEL.md §4's tolerance
//! (fp32: |Δ| ≤ 1e-4 · max|reference|). The fixtures were made by `make_fixtures.py`
//! (diffusers, tiny random weights) and `crosscheck_original.py` (official key names);
//! both scripts are kept beside them.

use burn::prelude::*;
use r2v_wan::Cpu;
use r2v_wan::config::TransformerConfig;
use r2v_wan::dit::{Conditioning, TimestepInput, WanTransformer};
use r2v_wan::weights::Weights;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every tensor of an `.io.safetensors` file as (shape, f32 values).
fn io(name: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture(&format!("{name}.io.safetensors"))).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, (v.shape().to_vec(), values))
        })
        .collect()
}

fn tensor<const D: usize>(
    io: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    key: &str,
) -> Tensor<Cpu, D> {
    let (shape, values) = &io[key];
    let shape: [usize; D] = shape
        .clone()
        .try_into()
        .unwrap_or_else(|_| panic!("{key} has rank {}", shape.len()));
    Tensor::from_data(TensorData::new(values.clone(), shape), &Default::default())
}

fn model(name: &str, weights: &str) -> WanTransformer<Cpu> {
    let config = TransformerConfig::from_file(&fixture(&format!("{name}.config.json"))).unwrap();
    let weights = Weights::open(&fixture(&format!("{weights}.weights.safetensors"))).unwrap();
    WanTransformer::load(config, weights, &Default::default()).unwrap()
}

/// Asserts `|got − want| ≤ 1e-4 · max|want|` everywhere.
fn assert_close(got: Tensor<Cpu, 5>, want: &[f32], what: &str) {
    let got = got.into_data().to_vec::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: element count");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max |Δ| {worst:e} > 1e-4 × {scale}"
    );
}

fn conditioning(io: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Conditioning<Cpu> {
    Conditioning {
        timestep: TimestepInput::PerSample(tensor::<1>(io, "timestep")),
        text: tensor::<3>(io, "encoder_hidden_states"),
        image: None,
        control: None,
    }
}

#[test]
fn t2v_matches_diffusers() {
    let io = io("wan_t2v_tiny");
    let out = model("wan_t2v_tiny", "wan_t2v_tiny")
        .forward(tensor::<5>(&io, "hidden_states"), conditioning(&io))
        .unwrap();
    assert_close(out, &io["output"].1, "wan_t2v_tiny");
}

#[test]
fn official_key_layout_loads_and_matches() {
    let io = io("wan_t2v_tiny_ORIGINAL_KEYS");
    let model = model("wan_t2v_tiny", "wan_t2v_tiny_ORIGINAL_KEYS");
    // The official model takes unbatched inputs and zero-pads the text to its text_len (12).
    let x = tensor::<4>(&io, "x").unsqueeze::<5>();
    let context = tensor::<2>(&io, "context");
    let padded = Tensor::cat(
        vec![context, Tensor::zeros([5, 32], &Default::default())],
        0,
    )
    .unsqueeze::<3>();
    let cond = Conditioning {
        timestep: TimestepInput::PerSample(tensor::<1>(&io, "t")),
        text: padded,
        image: None,
        control: None,
    };
    assert_close(
        model.forward(x, cond).unwrap(),
        &io["output"].1,
        "official keys",
    );
}

#[test]
fn per_token_timesteps_match_diffusers() {
    let io = io("wan_ti2v_tokens_tiny");
    let cond = Conditioning {
        timestep: TimestepInput::PerToken(tensor::<2>(&io, "timestep")),
        text: tensor::<3>(&io, "encoder_hidden_states"),
        image: None,
        control: None,
    };
    let out = model("wan_ti2v_tokens_tiny", "wan_ti2v_tokens_tiny")
        .forward(tensor::<5>(&io, "hidden_states"), cond)
        .unwrap();
    assert_close(out, &io["output"].1, "wan_ti2v_tokens_tiny");
}

#[test]
fn i2v_matches_diffusers() {
    let io = io("wan_i2v_tiny");
    let mut cond = conditioning(&io);
    cond.image = Some(tensor::<3>(&io, "encoder_hidden_states_image"));
    let out = model("wan_i2v_tiny", "wan_i2v_tiny")
        .forward(tensor::<5>(&io, "hidden_states"), cond)
        .unwrap();
    assert_close(out, &io["output"].1, "wan_i2v_tiny");
}

#[test]
fn vace_matches_diffusers() {
    let io = io("wan_vace_tiny");
    let mut cond = conditioning(&io);
    cond.control = Some((
        tensor::<5>(&io, "control_hidden_states"),
        io["control_hidden_states_scale"].1.clone(),
    ));
    let out = model("wan_vace_tiny", "wan_vace_tiny")
        .forward(tensor::<5>(&io, "hidden_states"), cond)
        .unwrap();
    assert_close(out, &io["output"].1, "wan_vace_tiny");
}

#[test]
fn a_wrong_or_missing_key_is_named() {
    let config = TransformerConfig::from_file(&fixture("wan_t2v_tiny.config.json")).unwrap();
    let more_layers = TransformerConfig {
        num_layers: 3,
        ..config.clone()
    };
    let weights = Weights::open(&fixture("wan_t2v_tiny.weights.safetensors")).unwrap();
    let err = WanTransformer::<Cpu>::load(more_layers, weights, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing key blocks.2.attn1.to_q.weight"),
        "{err}"
    );
    let wider = TransformerConfig {
        ffn_dim: 64,
        ..config.clone()
    };
    let weights = Weights::open(&fixture("wan_t2v_tiny.weights.safetensors")).unwrap();
    let err = WanTransformer::<Cpu>::load(wider, weights, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("key blocks.0.ffn.net.0.proj.weight has shape [128, 64], expected [64, 64]"),
        "{err}"
    );
    let fewer = TransformerConfig {
        num_layers: 1,
        ..config
    };
    let weights = Weights::open(&fixture("wan_t2v_tiny.weights.safetensors")).unwrap();
    let err = WanTransformer::<Cpu>::load(fewer, weights, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unexpected key blocks.1.attn1.to_q.weight"),
        "{err}"
    );
}

#[test]
fn other_head_counts_and_odd_shapes_run() {
    // A config the fixtures do not cover: 4 heads of 16, non-square latents, 5 frames.
    let config = TransformerConfig {
        num_attention_heads: 4,
        attention_head_dim: 16,
        num_layers: 1,
        ffn_dim: 96,
        text_dim: 32,
        freq_dim: 32,
        in_channels: 4,
        out_channels: 4,
        ..TransformerConfig::wan21_t2v_1_3b()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.safetensors");
    write_random_weights(&config, &path);
    let model =
        WanTransformer::<Cpu>::load(config, Weights::open(&path).unwrap(), &Default::default())
            .unwrap();
    let device = Default::default();
    let x = Tensor::<Cpu, 5>::ones([1, 4, 5, 6, 10], &device);
    let cond = Conditioning {
        timestep: TimestepInput::PerSample(Tensor::from_data([500.0f32], &device)),
        text: Tensor::ones([1, 7, 32], &device),
        image: None,
        control: None,
    };
    let out = model.forward(x, cond).unwrap();
    assert_eq!(out.dims(), [1, 4, 5, 6, 10]);
    let values = out.into_data().to_vec::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
    assert!(values.iter().any(|v| *v != 0.0));
}

/// Writes deterministic pseudo-random weights with every key `config` needs.
fn write_random_weights(config: &TransformerConfig, path: &Path) {
    let dim = config.dim();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "patch_embedding.weight".into(),
            vec![dim, config.in_channels, 1, 2, 2],
        ),
        ("patch_embedding.bias".into(), vec![dim]),
        ("scale_shift_table".into(), vec![1, 2, dim]),
        ("proj_out.weight".into(), vec![config.out_channels * 4, dim]),
        ("proj_out.bias".into(), vec![config.out_channels * 4]),
    ];
    let mut linear = |name: &str, d_in: usize, d_out: usize| {
        shapes.push((format!("{name}.weight"), vec![d_out, d_in]));
        shapes.push((format!("{name}.bias"), vec![d_out]));
    };
    linear(
        "condition_embedder.time_embedder.linear_1",
        config.freq_dim,
        dim,
    );
    linear("condition_embedder.time_embedder.linear_2", dim, dim);
    linear("condition_embedder.time_proj", dim, 6 * dim);
    linear(
        "condition_embedder.text_embedder.linear_1",
        config.text_dim,
        dim,
    );
    linear("condition_embedder.text_embedder.linear_2", dim, dim);
    for i in 0..config.num_layers {
        for attn in ["attn1", "attn2"] {
            for p in ["to_q", "to_k", "to_v", "to_out.0"] {
                linear(&format!("blocks.{i}.{attn}.{p}"), dim, dim);
            }
        }
        linear(&format!("blocks.{i}.ffn.net.0.proj"), dim, config.ffn_dim);
        linear(&format!("blocks.{i}.ffn.net.2"), config.ffn_dim, dim);
    }
    for i in 0..config.num_layers {
        for attn in ["attn1", "attn2"] {
            shapes.push((format!("blocks.{i}.{attn}.norm_q.weight"), vec![dim]));
            shapes.push((format!("blocks.{i}.{attn}.norm_k.weight"), vec![dim]));
        }
        shapes.push((format!("blocks.{i}.norm2.weight"), vec![dim]));
        shapes.push((format!("blocks.{i}.norm2.bias"), vec![dim]));
        shapes.push((format!("blocks.{i}.scale_shift_table"), vec![1, 6, dim]));
    }
    let mut state = 0x9e37_79b9_u32;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let bytes = (0..n)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    ((state as f32 / u32::MAX as f32 - 0.5) * 0.4).to_le_bytes()
                })
                .collect();
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

mod schedulers {
    use super::*;
    use r2v_wan::scheduler::{FlowEuler, Schedule, UniPc, unipc_schedule};

    fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn unipc_schedules_match_diffusers() {
        let io = io("schedulers");
        for shift in [3, 5, 8, 12] {
            let (sigmas, timesteps) = unipc_schedule(Schedule::Diffusers, 50, f64::from(shift));
            close(
                &sigmas,
                &io[&format!("unipc_shift{shift}_50_sigmas")].1,
                1e-6,
                &format!("sigmas shift {shift}"),
            );
            let t: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
            close(
                &t,
                &io[&format!("unipc_shift{shift}_50_timesteps")].1,
                0.0,
                &format!("timesteps shift {shift}"),
            );
        }
        // The official schedule differs from diffusers' (MODEL.md §1.6): both exist on purpose.
        let (official, official_t) = unipc_schedule(Schedule::Official, 50, 5.0);
        let (_, diffusers_t) = unipc_schedule(Schedule::Diffusers, 50, 5.0);
        assert_eq!(official_t[47..], [241, 172, 92]);
        assert_eq!(diffusers_t[47..], [244, 175, 96]);
        assert!(
            (official[0] - 0.999_8).abs() < 1e-3,
            "official σ_max = shift(0.999)"
        );
    }

    #[test]
    fn unipc_trajectory_matches_diffusers() {
        let io = io("schedulers");
        let mut sampler = UniPc::<Cpu>::new(Schedule::Diffusers, 8, 5.0);
        let mut lat = tensor::<5>(&io, "unipc8_init");
        for (i, &t) in sampler.timesteps().to_vec().iter().enumerate() {
            // The fixture's fake velocity: sin(1.3·x + t/1000) − 0.5·x.
            let v = (lat.clone() * 1.3 + t as f32 / 1000.0).sin() - lat.clone() * 0.5;
            lat = sampler.step(v, lat);
            let want = &io[&format!("unipc8_after_step{i}")].1;
            let got = lat.clone().into_data().to_vec::<f32>().unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            close(
                &got,
                want,
                1e-5 * scale.max(1.0),
                &format!("after step {i}"),
            );
        }
    }

    #[test]
    fn euler_schedules() {
        let io = io("schedulers");
        let diffusers = FlowEuler::diffusers(4, 5.0);
        close(
            diffusers.sigmas(),
            &io["euler4_shift5_sigmas"].1,
            1e-6,
            "diffusers euler sigmas",
        );
        close(
            &diffusers.timesteps(),
            &io["euler4_shift5_timesteps"].1,
            1e-3,
            "diffusers euler timesteps",
        );
        let flash = FlowEuler::flash(&[1000, 750, 500, 250], 5.0);
        close(
            flash.sigmas(),
            &[1.0, 0.9375, 0.833_333_3, 0.625, 0.0],
            1e-6,
            "flash sigmas",
        );
    }
}
