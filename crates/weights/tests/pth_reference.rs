//! The converter against checkpoints written by real `torch.save` (torch 2.15,
//! committed fixtures made once by `tests/reference/make_pth.py`; no Python
//! or torch is needed to run these tests): every tensor is compared bit for
//! bit with the contiguous copy that `safetensors.torch.save_file` wrote, for
//! the zip format, the legacy format and a big-endian archive; f16/bf16
//! conversion against torch's `.half()` / `.bfloat16()`; the registry's
//! generated tensor lists against torchvision's and timm's modules; real-shaped
//! registry models (stride-0 views of one small storage) converted end to end;
//! and every kind of bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use labelscope_core::npy::SafeTensors;
use labelscope_weights::pth::Checkpoint;
use labelscope_weights::registry::{self, ArchConfig, ChecksumCheck};
use labelscope_weights::{convert, verify, ConvertOptions, DType, Error, Tensor};

fn fx(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn tiny_dino() -> ArchConfig {
    ArchConfig::from_json(
        r#"{"labelscope_arch":"dino_vit","embed_dim":8,"depth":2,"num_heads":2,"patch_size":4,"img_size":16,"mlp_hidden":32}"#,
        "test",
    )
    .unwrap()
}

/// `(dtype name, shape, bytes)` of every tensor of a safetensors file, read by labelscope-core.
fn st_tensors(path: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let st = SafeTensors::open(path).unwrap();
    st.names()
        .into_iter()
        .map(|n| {
            let a = st.read(&n).unwrap();
            let d = labelscope_weights::safetensors::dtype_from_core(a.dtype).unwrap();
            (n, (d.to_string(), a.shape.clone(), a.raw_bytes().to_vec()))
        })
        .collect()
}

fn as_st(ts: &BTreeMap<String, Tensor>) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    ts.iter().map(|(n, t)| (n.clone(), (t.dtype.to_string(), t.shape.clone(), t.data.clone()))).collect()
}

fn assert_same(
    got: &BTreeMap<String, (String, Vec<usize>, Vec<u8>)>,
    want: &BTreeMap<String, (String, Vec<usize>, Vec<u8>)>,
) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (n, w) in want {
        let g = &got[n];
        assert_eq!((&g.0, &g.1), (&w.0, &w.1), "{n}: dtype/shape");
        assert!(g.2 == w.2, "{n}: bytes differ");
    }
}

#[test]
fn dino_training_checkpoint_bit_exact_zip_and_legacy() {
    let want = st_tensors(&fx("tiny_dino_expected.safetensors"));
    assert_eq!(want.len(), 4 + 2 * 12 + 2);
    for input in ["tiny_dino_teacher.pth", "tiny_dino_teacher_legacy.pth"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.safetensors");
        let opts = ConvertOptions { config: Some(tiny_dino()), ..Default::default() };
        let r = convert(&fx(input), &out, &opts).unwrap();
        assert_eq!(r.state_dict_key, "teacher", "{input}: the teacher, not the student");
        assert_eq!(r.dropped, vec!["module.head.last_layer.weight_g", "module.head.mlp.0.weight"]);
        assert_eq!((r.model.as_str(), r.checksum.clone()), ("custom", ChecksumCheck::Unknown));
        assert_same(&st_tensors(&out), &want);
        assert_eq!(r.tensors, want.len());
        // The stored views were really non-contiguous / offset / shared.
        let mut ck = Checkpoint::open(&fx(input)).unwrap();
        assert_eq!(ck.is_legacy(), input.contains("legacy"));
        let (_, raw) = ck.state_dict(Some("teacher")).unwrap();
        let t = &raw["module.backbone.blocks.0.attn.proj.weight"];
        assert_eq!(t.strides, vec![1, 8], "{input}: a transposed view");
        assert_eq!(raw["module.backbone.pos_embed"].offset, 37);
        assert_eq!(raw["module.backbone.blocks.1.attn.qkv.bias"].offset, 24 * 8);
        // Metadata: the config the model loader reads back.
        let c = labelscope_weights::read_config(&out).unwrap().unwrap();
        assert_eq!(c, tiny_dino());
        let md = labelscope_weights::safetensors::read_metadata(&out).unwrap();
        assert_eq!(md["labelscope_arch"], "dino_vit");
        assert_eq!(md["source_file"], input);
        assert_eq!(md["source_sha256"], r.source_sha256);
        assert!(md["config"].starts_with(r#"{"labelscope_arch":"dino_vit","embed_dim":8"#), "{}", md["config"]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}

#[test]
fn every_dtype_and_view_bit_exact() {
    let want = st_tensors(&fx("tiny_dtypes_expected.safetensors"));
    for input in ["tiny_dtypes.pth", "tiny_dtypes_legacy.pth", "tiny_dtypes_bigendian.pth"] {
        let (key, ts) = Checkpoint::open(&fx(input)).unwrap().state_dict(None).unwrap();
        assert_eq!(key, "");
        assert_same(&as_st(&ts), &want);
        assert_eq!(ts["expanded"].strides, vec![1, 0], "{input}");
        assert_eq!(ts["conv_channels_last"].strides, vec![12, 1, 6, 3], "{input}");
        assert_eq!(ts["f64_offset_view"].offset, 6, "{input}");
    }
    assert_eq!(want["bf16"].0, "BF16");
    assert_eq!(want["scalar"].1, Vec::<usize>::new());
    assert_eq!(want["empty"].1, vec![0, 3]);
}

#[test]
fn f16_and_bf16_conversion_matches_torch() {
    for (dtype, file) in
        [(DType::F16, "tiny_dino_expected_f16.safetensors"), (DType::BF16, "tiny_dino_expected_bf16.safetensors")]
    {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.safetensors");
        let opts = ConvertOptions { config: Some(tiny_dino()), dtype: Some(dtype), ..Default::default() };
        let r = convert(&fx("tiny_dino_teacher.pth"), &out, &opts).unwrap();
        assert_eq!(r.converted_dtype, if dtype == DType::F16 { r.tensors - 1 } else { r.tensors });
        assert_same(&st_tensors(&out), &st_tensors(&fx(file)));
    }
}

#[test]
fn deit_model_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let config = ArchConfig::from_json(
        r#"{"labelscope_arch":"timm_vit","embed_dim":8,"depth":2,"num_heads":2,"patch_size":4,"img_size":16,"mlp_hidden":32,"num_classes":5}"#,
        "t",
    )
    .unwrap();
    let r =
        convert(&fx("tiny_deit.pth"), &out, &ConvertOptions { config: Some(config), ..Default::default() }).unwrap();
    assert_eq!(r.state_dict_key, "model");
    assert_same(&st_tensors(&out), &st_tensors(&fx("tiny_deit_expected.safetensors")));
    // The same file against the DINO layout: the head is dropped, so it matches too,
    // but against a DINO config of another size the first mismatch is named.
    let e = convert(
        &fx("tiny_deit.pth"),
        &out,
        &ConvertOptions { model: Some("dino_vits16".into()), ..Default::default() },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("tiny_deit.pth: does not match model dino_vits16: tensor \"cls_token\" has shape [1, 1, 8], expected [1, 1, 384]"), "{e}");
}

#[test]
fn forbidden_global_is_refused_without_running_it() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let e = convert(&fx("evil.pth"), &dir.path().join("e.safetensors"), &ConvertOptions::default()).unwrap_err();
    match &e {
        Error::ForbiddenGlobal { name, .. } => assert!(name == "posix.system" || name == "os.system", "{name}"),
        other => panic!("{other}"),
    }
    let m = e.to_string();
    assert!(m.contains("evil.pth") && m.contains("refusing to load the Python global \"posix.system\""), "{m}");
    assert!(!cwd.join("labelscope_pwned_marker").exists() && !dir.path().join("e.safetensors").exists());
}

/// The registry's generated tensor lists equal the reference modules' state dicts.
#[test]
fn registry_layouts_equal_torchvision_and_timm() {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx("layouts.json")).unwrap()).unwrap();
    let models = registry::models().unwrap();
    assert_eq!(v["models"].as_object().unwrap().len(), models.len());
    for m in models {
        let entry = &v["models"][&m.name];
        let layout = v["layouts"][entry["layout"].as_str().unwrap()].as_array().unwrap();
        let want: Vec<(String, Vec<usize>, bool)> = layout
            .iter()
            .map(|t| {
                let shape = t[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (t[0].as_str().unwrap().to_string(), shape, t[2].as_bool().unwrap())
            })
            .collect();
        let got: Vec<(String, Vec<usize>, bool)> =
            m.expected().into_iter().map(|t| (t.name, t.shape, t.buffer)).collect();
        assert_eq!(got.len(), want.len(), "{}", m.name);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{}: first difference in layout order", m.name);
        }
        assert_eq!(m.config.parameter_count(), entry["parameters"].as_u64().unwrap(), "{}", m.name);
    }
}

/// Parameter counts against published numbers (buffers such as BatchNorm
/// running statistics not counted, as the publications count):
/// torchvision's ResNet-50 docs (`num_params` 25,557,032), DeiT's README and
/// timm (22,050,664 and 86,567,656), DINO ViT-S/16 backbone 21.67M (the
/// DINO README's 21M rounds it; the DINO head is not part of the backbone),
/// and DINOv2's 21M/86M/300M/1,100M models, whose exact counts including
/// `mask_token` are those of the official module; see `layouts.json` (timm's
/// count + D for the mask_token that timm drops).
#[test]
fn parameter_counts_match_published_numbers() {
    let n = |m: &str| registry::model(m).unwrap().config.parameter_count();
    assert_eq!(n("resnet50"), 25_557_032);
    assert_eq!(n("resnet50_v2"), 25_557_032);
    assert_eq!(n("deit_small_patch16_224"), 22_050_664);
    assert_eq!(n("vit_small_patch16_224"), 22_050_664);
    assert_eq!(n("deit_base_patch16_224"), 86_567_656);
    assert_eq!(n("vit_base_patch16_224"), 86_567_656);
    assert_eq!(n("dino_vits16"), 21_665_664);
    assert_eq!(n("dinov2_vits14"), 22_056_576);
    assert_eq!(n("dinov2_vitb14"), 86_580_480);
    assert_eq!(n("dinov2_vitl14"), 304_368_640);
    assert_eq!(n("dinov2_vitg14"), 1_136_480_768);
    assert_eq!(n("dinov2_vits14_reg") - n("dinov2_vits14"), 4 * 384);
    for (m, published_m) in
        [("dinov2_vits14", 22.06), ("dinov2_vitb14", 86.58), ("dinov2_vitl14", 304.37), ("dinov2_vitg14", 1136.48)]
    {
        assert!((n(m) as f64 / 1e6 - published_m).abs() < 0.005, "{m}");
    }
}

fn expanded_values() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fx("expanded.json")).unwrap()).unwrap()
}

/// Every element of every tensor equals the value the generator gave it.
fn check_values(out: &Path, fixture: &str) {
    let values = expanded_values();
    let want = values[fixture].as_object().unwrap();
    let st = SafeTensors::open(out).unwrap();
    assert_eq!(st.names().len(), want.len(), "{fixture}");
    for (name, v) in want {
        let a = st.read(name).unwrap();
        let v = v.as_f64().unwrap() as f32;
        let x = a.to_f32_vec(out, name).unwrap();
        assert!(x.iter().all(|&e| e == v), "{fixture}: {name}");
    }
}

#[test]
fn real_shaped_registry_models_convert_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, model, key, dropped) in [
        ("dino_vits16_expanded.pth", "dino_vits16", "teacher", 8),
        ("deit_small_patch16_224_expanded.pth", "deit_small_patch16_224", "model", 0),
        ("dinov2_vits14_reg_expanded.pth", "dinov2_vits14_reg", "", 0),
    ] {
        let out = dir.path().join(format!("{model}.safetensors"));
        // Only DeiT has a published checksum (in its file name), which this file does not match.
        let official = registry::model(model).unwrap().sha256_prefix.is_some();
        let opts = ConvertOptions { model: Some(model.into()), allow_unofficial: official, ..Default::default() };
        let r = convert(&fx(fixture), &out, &opts).unwrap();
        assert_eq!((r.state_dict_key.as_str(), r.dropped.len()), (key, dropped), "{fixture}");
        assert_eq!(matches!(r.checksum, ChecksumCheck::Mismatch { .. }), official, "{fixture}");
        assert_eq!(official, model.starts_with("deit"));
        if !official {
            assert_eq!(r.checksum, ChecksumCheck::Unknown);
        }
        check_values(&out, fixture);
        let v = verify(&out, None, None, official).unwrap();
        assert_eq!((v.model.as_str(), v.safetensors, v.tensors), (model, true, r.tensors));
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn resnet50_checksum_prefix_and_batchnorm_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.safetensors");
    let input = fx("resnet50_expanded.pth");
    let opts = ConvertOptions { model: Some("resnet50".into()), ..Default::default() };
    let e = convert(&input, &out, &opts).unwrap_err().to_string();
    assert!(
        e.contains("resnet50_expanded.pth: SHA-256 ")
            && e.contains("does not match the published 0676ba61… of resnet50 (resnet50-0676ba61.pth)")
            && e.contains("--allow-unofficial"),
        "{e}"
    );
    assert!(!out.exists());
    let opts = ConvertOptions { allow_unofficial: true, ..opts };
    let r = convert(&input, &out, &opts).unwrap();
    assert!(matches!(r.checksum, ChecksumCheck::Mismatch { .. }));
    assert_eq!(r.dropped.len(), 53, "num_batches_tracked of the 53 BatchNorms");
    assert!(r.dropped.iter().all(|d| d.ends_with(".num_batches_tracked")));
    assert_eq!(r.tensors, 267);
    check_values(&out, "resnet50_expanded.pth");
    // verify: the recorded source checksum is not the official one.
    let e = verify(&out, None, None, false).unwrap_err().to_string();
    assert!(e.contains("of the source checkpoint") && e.contains("0676ba61"), "{e}");
    let v = verify(&out, Some("resnet50"), None, true).unwrap();
    assert_eq!((v.parameters, v.tensors), (25_557_032, 267));
    // verify a checkpoint directly: the same checks after the key mapping.
    let v = verify(&input, Some("resnet50_v2"), None, true).unwrap();
    assert!(!v.safetensors && matches!(v.checksum, ChecksumCheck::Mismatch { .. }));
}

#[test]
fn wrong_or_broken_weights_name_the_first_bad_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.safetensors");
    let run = |input: &str, model: &str| {
        let opts = ConvertOptions { model: Some(model.into()), ..Default::default() };
        let e = convert(&fx(input), &out, &opts).unwrap_err();
        assert!(!out.exists(), "{input}: no output on a failed check");
        assert!(matches!(e, Error::Model { .. }), "{e}");
        e.to_string()
    };
    let e = run("dino_vits16_missing.pth", "dino_vits16");
    assert!(
        e.starts_with(&format!(
            "{}: does not match model dino_vits16: missing tensor \"blocks.11.mlp.fc2.bias\" (shape [384]",
            fx("dino_vits16_missing.pth").display()
        )),
        "{e}"
    );
    assert!(e.contains("1 of the 150 expected tensors are missing"), "{e}");
    let e = run("dino_vits16_badshape.pth", "dino_vits16");
    assert!(e.contains("tensor \"blocks.5.attn.qkv.weight\" has shape [1152, 383], expected [1152, 384]"), "{e}");
    let e = run("dino_vits16_intdtype.pth", "dino_vits16");
    assert!(e.contains("tensor \"norm.bias\" has dtype I64, expected a floating-point type"), "{e}");
    // Weights of another architecture: the first missing tensor, the extras, and what they are.
    let e = run("resnet50_expanded.pth", "dino_vits16");
    assert!(e.contains("missing tensor \"cls_token\"") && e.contains("320 unexpected tensor(s): \"bn1.bias\""), "{e}");
    assert!(e.contains("the tensors match registry model(s) resnet50, resnet50_v2"), "{e}");
    let e = run("dino_vits16_expanded.pth", "dino_vitb16");
    assert!(
        e.contains("tensor \"cls_token\" has shape [1, 1, 384], expected [1, 1, 768]") && e.contains("dino_vits16"),
        "{e}"
    );
    let e = run("dino_vits16_expanded.pth", "dinov2_vits14");
    assert!(e.contains("has shape [1, 197, 384], expected [1, 1370, 384]"), "{e}");
}

fn expect_err(path: &Path, what: &str) -> String {
    let r = std::panic::catch_unwind(|| Checkpoint::open(path).and_then(|mut c| c.state_dict(None).map(|_| ())));
    match r {
        Ok(Err(e)) => {
            let m = e.to_string();
            assert!(m.contains(&path.display().to_string()), "{what}: the error names the file: {m}");
            m
        }
        Ok(Ok(())) => panic!("{what}: a damaged file was accepted"),
        Err(_) => panic!("{what}: panicked"),
    }
}

#[test]
fn truncated_and_corrupted_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.pth");
    for input in ["tiny_dino_teacher.pth", "tiny_dino_teacher_legacy.pth"] {
        let bytes = std::fs::read(fx(input)).unwrap();
        let n = bytes.len();
        let mut cuts: Vec<usize> = (0..2048).step_by(37).chain((n - 2048..n).step_by(29)).collect();
        cuts.extend((0..16).map(|k| k * n / 16));
        for &cut in &cuts {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            expect_err(&p, &format!("{input} truncated at {cut}"));
        }
        // Bytes flipped: never a panic; mostly errors (zip CRCs, pickle structure).
        let flip = dir.path().join("flip.pth");
        let mut errors = 0;
        for k in 0..40 {
            let mut b = bytes.clone();
            let i = k * (n / 40) + 11;
            b[i] ^= 0x5a;
            std::fs::write(&flip, &b).unwrap();
            let r =
                std::panic::catch_unwind(|| Checkpoint::open(&flip).and_then(|mut c| c.state_dict(None).map(|_| ())));
            assert!(r.is_ok(), "{input}: byte {i} flipped: panicked");
            errors += usize::from(r.unwrap().is_err());
        }
        if !input.contains("legacy") {
            // Flips in zip padding (torch aligns storages with extra fields) go unnoticed;
            // flips in storage bytes fail the CRC, in the pickle its decoding.
            assert!(errors >= 25, "{input}: {errors} of 40 flips detected");
        }
    }
    let m = expect_err(
        &{
            let p = dir.path().join("legacy_cut.pth");
            let b = std::fs::read(fx("tiny_dtypes_legacy.pth")).unwrap();
            std::fs::write(&p, &b[..b.len() - 3]).unwrap();
            p
        },
        "legacy data cut",
    );
    assert!(m.contains("the file is truncated") || m.contains("ends early"), "{m}");
    // The pickle itself truncated at every offset.
    let zip_bytes = std::fs::read(fx("tiny_dino_teacher.pth")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let pkl_name =
        (0..z.len()).map(|i| z.by_index(i).unwrap().name().to_string()).find(|n| n.ends_with("/data.pkl")).unwrap();
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name(&pkl_name).unwrap(), &mut pkl).unwrap();
    for cut in 0..pkl.len() {
        let r = labelscope_weights::pickle::unpickle(&pkl[..cut], Path::new("cut.pth"));
        assert!(r.is_err(), "pickle truncated at {cut} was accepted");
    }
    // Random bit flips in the pickle: any result but a panic.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = pkl.clone();
        let i = (state % b.len() as u64) as usize;
        b[i] ^= 1 << ((state >> 32) % 8);
        let _ = labelscope_weights::pickle::unpickle(&b, Path::new("flip.pth"));
    }
    // Not a checkpoint at all.
    std::fs::write(&p, b"hello world").unwrap();
    let m = expect_err(&p, "text");
    assert!(m.contains("not a PyTorch checkpoint"), "{m}");
    // A truncated converted file fails verify, naming the file.
    let out = dir.path().join("o.safetensors");
    convert(&fx("tiny_dino_teacher.pth"), &out, &ConvertOptions { config: Some(tiny_dino()), ..Default::default() })
        .unwrap();
    let b = std::fs::read(&out).unwrap();
    std::fs::write(&out, &b[..b.len() - 100]).unwrap();
    let e = verify(&out, None, Some(&tiny_dino()), false).unwrap_err().to_string();
    assert!(e.contains("o.safetensors") && e.contains("data_offsets"), "{e}");
}

#[test]
fn keys_prefixes_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let input = fx("tiny_dino_teacher.pth");
    let out = dir.path().join("x.safetensors");
    // Explicit key: the student.
    let opts = ConvertOptions {
        key: Some("student".into()),
        strip_prefixes: vec!["module.backbone.".into()],
        ..Default::default()
    };
    let r = convert(&input, &out, &opts).unwrap();
    assert_eq!((r.state_dict_key.as_str(), r.tensors), ("student", 1));
    // A missing key lists the keys that exist.
    let opts = ConvertOptions { key: Some("ema".into()), ..Default::default() };
    let e = convert(&input, &out, &opts).unwrap_err().to_string();
    assert!(e.contains("tiny_dino_teacher.pth") && e.contains("\"teacher\"") && e.contains("\"epoch\""), "{e}");
    // A key that is not a dict.
    let opts = ConvertOptions { key: Some("epoch".into()), ..Default::default() };
    assert!(convert(&input, &out, &opts).unwrap_err().to_string().contains("holds a int"));
    // Integer-typed targets are refused; a model and a config together too.
    let opts = ConvertOptions { dtype: Some(DType::I32), ..Default::default() };
    assert!(convert(&input, &out, &opts).is_err());
    let opts = ConvertOptions { model: Some("dino_vits16".into()), config: Some(tiny_dino()), ..Default::default() };
    assert!(convert(&input, &out, &opts).is_err());
    // The output may not be the input.
    let copy = dir.path().join("c.pth");
    std::fs::copy(&input, &copy).unwrap();
    assert!(convert(&copy, &copy, &ConvertOptions::default()).unwrap_err().to_string().contains("overwrite the input"));
}
