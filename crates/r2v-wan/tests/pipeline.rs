//! The VACE reference-to-video pipeline matches diffusers' `WanVACEPipeline` on the tiny
//! fixture (`tests/fixtures/pipeline/`, made by `make_pipeline_fixture.py`), step by step,
//! in both variants (UniPC with CFG; flash Euler without), within the README's tolerances.
//! Phantom mode is checked for shape and determinism. Reference images whose sides are not
//! multiples of 8 go through Pillow's Lanczos first, as in diffusers: the resampler equals
//! Pillow byte for byte, and the whole pipeline matches a fixture with two such references
//! (`make_odd_reference_fixture.py`).

use burn::prelude::*;
use r2v_wan::Cpu;
use r2v_wan::compare::difference;
use r2v_wan::config::TransformerConfig;
use r2v_wan::dit::WanTransformer;
use r2v_wan::pipeline::{
    Generation, Method, Pipeline, ReferenceOrder, RgbImage, Sampler, aspect_fit, canvas,
};
use r2v_wan::scheduler::Schedule;
use r2v_wan::tensor_io::{self, TensorMap};
use r2v_wan::vae::{VaeConfig, WanVae};
use r2v_wan::weights::Weights;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline")
}

fn io() -> TensorMap {
    tensor_io::read(&dir().join("wan_vace_r2v_pipeline_tiny.io.safetensors")).unwrap()
}

fn tensor<const D: usize>(io: &TensorMap, key: &str) -> Tensor<Cpu, D> {
    tensor_io::tensor(io, key, &Default::default()).unwrap()
}

fn pipeline(method: Method) -> Pipeline<Cpu> {
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("wan_vace_r2v_pipeline_tiny.config.json")).unwrap(),
    )
    .unwrap();
    let weights = dir().join("wan_vace_r2v_pipeline_tiny.weights.safetensors");
    let device = Default::default();
    let transformer_config: TransformerConfig =
        serde_json::from_value(config["transformer"]["config"].clone()).unwrap();
    let vae_config: VaeConfig = serde_json::from_value(config["vae"]["config"].clone()).unwrap();
    let transformer = WanTransformer::load(
        transformer_config,
        Weights::open(&weights).unwrap().with_prefix("transformer."),
        &device,
    )
    .unwrap();
    let vae = WanVae::load(
        vae_config,
        Weights::open(&weights).unwrap().with_prefix("vae."),
        &device,
    )
    .unwrap();
    Pipeline::new(transformer, vae, method).unwrap()
}

fn image(io: &TensorMap, j: usize) -> RgbImage {
    let (shape, values) = &io[&format!("ref_image_{j}_hwc_u8")];
    RgbImage {
        height: shape[0],
        width: shape[1],
        data: values.iter().map(|&v| v as u8).collect(),
    }
}

/// Asserts `|got − want| ≤ atol` everywhere; a NaN or an infinity fails.
fn assert_close(got: &[f32], want: &[f32], atol: f32, what: &str) {
    let d = difference(got, want).unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: max |Δ| {:e}", d.max_abs);
    assert!(
        d.max_abs <= atol,
        "{what}: max |Δ| {:e} > {atol:e}",
        d.max_abs
    );
}

fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn generation(io: &TensorMap, sampler: Sampler, guidance: f32) -> Generation<Cpu> {
    Generation {
        prompt: tensor(io, "prompt_embeds"),
        negative: Some(tensor(io, "negative_prompt_embeds")),
        references: vec![image(io, 0), image(io, 1)],
        height: 32,
        width: 32,
        num_frames: 9,
        sampler,
        guidance,
        noise: tensor(io, "initial_latents"),
    }
}

const VACE: Method = Method::Vace {
    scale: 1.0,
    order: ReferenceOrder::Diffusers,
};

#[test]
fn references_and_control_match_diffusers() {
    let io = io();
    for j in 0..2 {
        let got = canvas(&image(&io, j), 32, 32);
        assert_close(&got, &io[&format!("ref_canvas_{j}")].1, 1e-6, "canvas");
    }
    let pipeline = pipeline(VACE);
    let g = generation(&io, Sampler::flash(4), 1.0);
    let encoded = pipeline
        .encode(&g.references, 32, 32, &[9], &Default::default())
        .unwrap();
    for (j, r) in encoded.references.iter().enumerate() {
        assert_close(
            &values(r.clone()),
            &io[&format!("ref_latents_{j}")].1,
            1e-5,
            "ref latents",
        );
    }
    let control = pipeline
        .vace_control(&encoded, &g, ReferenceOrder::Diffusers)
        .unwrap();
    assert_close(
        &values(control),
        &io["control_hidden_states"].1,
        1e-5,
        "control",
    );
    // The official order differs, and would fail the fixture.
    let official = pipeline
        .vace_control(&encoded, &g, ReferenceOrder::Official)
        .unwrap();
    let (_, want) = &io["control_hidden_states"];
    let worst = difference(&values(official), want).unwrap().max_abs;
    assert!(worst > 0.1, "the reference order must matter ({worst})");
}

/// Samples `g`, comparing the latents after every step with `{prefix}latents_after_step{i}`
/// and the video latents with `{prefix}final_latents`; returns the video latents.
fn sample_against(
    pipeline: &Pipeline<Cpu>,
    g: &Generation<Cpu>,
    io: &TensorMap,
    prefix: &str,
) -> Tensor<Cpu, 5> {
    let mut steps = Vec::new();
    let latents = pipeline
        .sample(g, |_, _, latents| {
            steps.push(values(latents.clone()));
            Ok(())
        })
        .unwrap();
    for (i, step) in steps.iter().enumerate() {
        let want = &io[&format!("{prefix}latents_after_step{i}")].1;
        assert_close(step, want, 1e-4, &format!("{prefix} step {i}"));
    }
    let video = pipeline.video_latents(latents, g.references.len());
    assert_close(
        &values(video.clone()),
        &io[&format!("{prefix}final_latents")].1,
        1e-4,
        &format!("{prefix} final latents"),
    );
    video
}

fn run_variant(variant: &str, sampler: Sampler, guidance: f32) {
    let io = io();
    let pipeline = pipeline(VACE);
    let g = generation(&io, sampler, guidance);
    let timesteps = g.sampler.timesteps();
    assert_close(
        &timesteps,
        &io[&format!("{variant}.timesteps")].1,
        0.0,
        "timesteps",
    );
    let video = sample_against(&pipeline, &g, &io, &format!("{variant}."));
    let mut chunks = Vec::new();
    pipeline
        .decode(video, |chunk| {
            chunks.push(chunk);
            Ok(())
        })
        .unwrap();
    let decoded = Tensor::cat(chunks, 2);
    assert_eq!(decoded.dims(), [1, 3, 9, 32, 32]);
    assert_close(
        &values(decoded),
        &io[&format!("{variant}.decoded_video")].1,
        3e-4,
        &format!("{variant} decoded"),
    );
}

#[test]
fn unipc_with_cfg_matches_diffusers() {
    run_variant(
        "unipc_cfg",
        Sampler::UniPc {
            steps: 4,
            shift: 3.0,
            schedule: Schedule::Diffusers,
        },
        5.0,
    );
}

#[test]
fn flash_euler_without_cfg_matches_diffusers() {
    let io = io();
    let Sampler::Euler { sigmas } = Sampler::flash(4) else {
        unreachable!()
    };
    assert_close(&sigmas, &io["euler_nocfg.sigmas"].1[..4], 0.0, "flash σ");
    run_variant("euler_nocfg", Sampler::flash(4), 1.0);
}

#[test]
fn phantom_runs_with_trailing_references_and_is_deterministic() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let device = Default::default();
    let load = || {
        let transformer = WanTransformer::<Cpu>::load(
            TransformerConfig::from_file(&fixtures.join("wan_t2v_tiny.config.json")).unwrap(),
            Weights::open(&fixtures.join("wan_t2v_tiny.weights.safetensors")).unwrap(),
            &device,
        )
        .unwrap();
        let vae = WanVae::load(
            VaeConfig::from_file(&fixtures.join("wan21_vae_tiny.config.json")).unwrap(),
            Weights::open(&fixtures.join("wan21_vae_tiny.weights.safetensors")).unwrap(),
            &device,
        )
        .unwrap();
        Pipeline::new(
            transformer,
            vae,
            Method::Phantom {
                image_guidance: 5.0,
            },
        )
        .unwrap()
    };
    let io = io();
    let pipeline = load();
    let shape = pipeline.latent_shape(32, 48, 5, 2);
    assert_eq!(
        shape,
        [1, 4, 4, 4, 6],
        "2 video latent frames + 2 references"
    );
    let noise = || {
        let values = (0..shape.iter().product::<usize>())
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect::<Vec<_>>();
        Tensor::<Cpu, 5>::from_data(TensorData::new(values, shape), &device)
    };
    let text = |rows: usize| {
        let mut t = values(tensor::<3>(&io, "prompt_embeds"));
        t.truncate(rows * 32);
        Tensor::<Cpu, 3>::from_data(TensorData::new(t, [1, rows, 32]), &device)
    };
    let run = |pipeline: &Pipeline<Cpu>| {
        let g = Generation {
            prompt: text(12),
            negative: Some(text(12).zeros_like()),
            references: vec![image(&io, 0), image(&io, 1)],
            height: 32,
            width: 48,
            num_frames: 5,
            sampler: Sampler::UniPc {
                steps: 3,
                shift: 5.0,
                schedule: Schedule::Official,
            },
            guidance: 7.5,
            noise: noise(),
        };
        let mut calls = 0;
        let latents = pipeline
            .sample(&g, |k, n, _| {
                calls += 1;
                assert_eq!((k, n), (calls, 3));
                Ok(())
            })
            .unwrap();
        let video = pipeline.video_latents(latents, 2);
        assert_eq!(video.dims(), [1, 4, 2, 4, 6]);
        let mut frames = 0;
        pipeline
            .decode(video.clone(), |chunk| {
                assert_eq!(chunk.dims()[3..], [32, 48]);
                frames += chunk.dims()[2];
                Ok(())
            })
            .unwrap();
        assert_eq!(frames, 5);
        values(video)
    };
    let first = run(&pipeline);
    assert!(first.iter().all(|v| v.is_finite()));
    assert_eq!(first, run(&load()), "same inputs, same latents");
    // A step callback's error stops the run (how cancel works).
    let g = Generation {
        prompt: text(12),
        negative: Some(text(12)),
        references: vec![image(&io, 0)],
        height: 32,
        width: 48,
        num_frames: 5,
        sampler: Sampler::flash(4),
        guidance: 1.0,
        noise: Tensor::zeros(pipeline.latent_shape(32, 48, 5, 1), &device),
    };
    let mut seen = 0;
    let stopped = pipeline.sample(&g, |k, _, _| {
        seen = k;
        Err(r2v_wan::WanError::Shape("cancelled".into()))
    });
    assert!(stopped.is_err());
    assert_eq!(seen, 1);
}

/// Pillow's `resize(size, LANCZOS)` on odd sizes, down and up, one axis or both, in both
/// of Pillow 13's pass orders: equal byte for byte.
#[test]
fn lanczos_equals_pillow_byte_for_byte() {
    let pil = tensor_io::read(&dir().join("pil_lanczos.io.safetensors")).unwrap();
    let mut cases = 0;
    while let Some((shape, input)) = pil.get(&format!("case{cases}_in")) {
        let (_, size) = &pil[&format!("case{cases}_size")];
        let (_, want) = &pil[&format!("case{cases}_out")];
        let input: Vec<u8> = input.iter().map(|&v| v as u8).collect();
        let out_size = (size[0] as usize, size[1] as usize);
        let got = r2v_wan::resample::lanczos_rgb(&input, (shape[1], shape[0]), out_size);
        let want: Vec<u8> = want.iter().map(|&v| v as u8).collect();
        let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(got.len(), want.len(), "case {cases}");
        assert_eq!(
            differing,
            0,
            "case {cases}: {:?} → {out_size:?}: {differing} bytes differ from Pillow",
            (shape[1], shape[0])
        );
        cases += 1;
    }
    assert!(cases >= 10, "{cases} cases");
}

/// Two references of 21×35 and 43×18 pixels through the whole flash pipeline match diffusers
/// within the shared fixture's tolerances; without the Lanczos step they would not.
#[test]
fn odd_sized_references_match_diffusers() {
    let io = tensor_io::read(&dir().join("wan_vace_r2v_odd_refs.io.safetensors")).unwrap();
    let images = [image(&io, 0), image(&io, 1)];
    assert_eq!((images[0].width, images[0].height), (21, 35));
    assert_eq!((images[1].width, images[1].height), (43, 18));
    for (j, image) in images.iter().enumerate() {
        let want = &io[&format!("ref_canvas_{j}")].1;
        assert_close(&canvas(image, 32, 32), want, 1e-6, "odd canvas");
        // Fitting the image as it comes, without Lanczos to multiples of 8, misses it.
        let skipped = difference(&aspect_fit(image, 32, 32), want)
            .unwrap()
            .max_abs;
        assert!(
            skipped > 1e-2,
            "skipping the Lanczos step must show: {skipped}"
        );
    }
    let pipeline = pipeline(VACE);
    let g = Generation {
        prompt: tensor(&io, "prompt_embeds"),
        negative: None,
        references: images.to_vec(),
        height: 32,
        width: 32,
        num_frames: 9,
        sampler: Sampler::flash(4),
        guidance: 1.0,
        noise: tensor(&io, "initial_latents"),
    };
    let video = sample_against(&pipeline, &g, &io, "");
    assert_close(
        &values(pipeline.decode_all(video).unwrap()),
        &io["decoded_video"].1,
        3e-4,
        "odd refs decoded",
    );
}
