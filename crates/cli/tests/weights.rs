//! `labelscope weights` end to end on the checkpoints of
//! crates/weights/tests/fixtures (written by real `torch.save`, see
//! tests/reference/make_pth.py): convert, verify and list, outputs read back
//! by labelscope-core and compared with the tensors torch saved, and bad input
//! (exit status 1, the message names the file and the tensor, no output file
//! left and an existing output untouched).

mod common;
use common::*;

use std::path::{Path, PathBuf};

fn fx(name: &str) -> String {
    repo_root().join("crates/weights/tests/fixtures").join(name).to_str().unwrap().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Files in `dir` (to prove that no temporary or partial file was left).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn list_shows_the_registry() {
    let out = labelscope_ok(&["weights", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 19, "{out}");
    assert!(lines[0].starts_with("model") && lines[0].contains("official file"));
    let r50 = lines.iter().find(|l| l.starts_with("resnet50 ")).unwrap();
    assert!(r50.contains("267") && r50.contains("25,557,032") && r50.contains("resnet50-0676ba61.pth"), "{r50}");
    assert!(r50.contains("prefix 0676ba61"), "{r50}");
    let g = lines.iter().find(|l| l.starts_with("dinov2_vitg14 ")).unwrap();
    assert!(g.contains("1,136,480,768") && g.contains("dinov2_vitg14_pretrain.pth"), "{g}");
    let json: serde_json::Value = serde_json::from_str(&labelscope_ok(&["weights", "list", "--json"])).unwrap();
    let deit = json.as_array().unwrap().iter().find(|m| m["name"] == "deit_base_patch16_224").unwrap();
    assert_eq!(deit["parameters"], 86_567_656);
    assert_eq!(deit["config"]["labelscope_arch"], "timm_vit");
    assert_eq!(deit["sha256"], serde_json::Value::Null);
    assert_eq!(deit["sha256_prefix"], "b5f2ef4d");
    let t = labelscope_ok(&["weights", "list", "--tensors", "dino_vits16"]);
    assert_eq!(t.lines().count(), 150);
    assert!(t.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pos_embed", "[1,", "197,", "384]"]), "{t}");
    let t = labelscope_ok(&["weights", "list", "--tensors", "resnet50"]);
    assert!(t.lines().any(|l| l.starts_with("layer4.2.bn3.running_var") && l.ends_with("(buffer)")), "{t}");
    let e = labelscope_err(&["weights", "list", "--tensors", "resnet51"]);
    assert!(e.contains("unknown model \"resnet51\"") && e.contains("resnet50_v2"), "{e}");
}

#[test]
fn convert_and_verify_a_dino_training_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dino_vits16.safetensors");
    let input = fx("dino_vits16_expanded.pth");
    let text = labelscope_ok(&["weights", "convert", "--model", "dino_vits16", "--input", &input, "--output", s(&out)]);
    assert!(
        text.contains("150 tensors, 21,665,664 elements") && text.contains("state dict: \"teacher\"; dropped 8"),
        "{text}"
    );
    assert!(text.contains("no published checksum"), "{text}");
    assert_eq!(files(dir.path()), vec![out.clone()]);
    // The values torch saved (tensor k of the generator's list holds k + 0.5 everywhere).
    let values: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx("expanded.json")).unwrap()).unwrap();
    let want = values["dino_vits16_expanded.pth"].as_object().unwrap();
    let st = labelscope_core::npy::SafeTensors::open(&out).unwrap();
    assert_eq!(st.names().len(), want.len());
    for name in ["cls_token", "pos_embed", "blocks.7.attn.qkv.weight", "norm.bias"] {
        let a = st.read(name).unwrap().to_f32_vec(&out, name).unwrap();
        assert!(a.iter().all(|&x| x as f64 == want[name].as_f64().unwrap()), "{name}");
    }
    // verify finds the model in the metadata; JSON output.
    let v = labelscope_ok(&["weights", "verify", s(&out)]);
    assert!(v.contains("ok, model dino_vits16: 150 tensors (150 F32), 21,665,664 parameters"), "{v}");
    let j: serde_json::Value =
        serde_json::from_str(&labelscope_ok(&["weights", "verify", "--model", "dino_vits16", s(&out), "--json"]))
            .unwrap();
    assert_eq!(
        (j["ok"].as_bool(), j["tensors"].as_u64(), j["checksum"]["status"].as_str()),
        (Some(true), Some(150), Some("unknown"))
    );
    // Against another model: the first mismatching tensor is named.
    let e = labelscope_err(&["weights", "verify", "--model", "dino_vits8", s(&out)]);
    assert!(
        e.contains("dino_vits16.safetensors")
            && e.contains("tensor \"pos_embed\" has shape [1, 197, 384], expected [1, 785, 384]"),
        "{e}"
    );
    // A truncated copy.
    let cut = dir.path().join("cut.safetensors");
    let b = std::fs::read(&out).unwrap();
    std::fs::write(&cut, &b[..b.len() / 2]).unwrap();
    let e = labelscope_err(&["weights", "verify", s(&cut)]);
    assert!(e.contains("cut.safetensors") && e.contains("tensor \"") && e.contains("data_offsets"), "{e}");
}

#[test]
fn convert_with_a_custom_config_is_bit_exact_and_f16() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.json");
    std::fs::write(
        &config,
        r#"{"labelscope_arch": "dino_vit", "embed_dim": 8, "depth": 2, "num_heads": 2, "patch_size": 4, "img_size": 16, "mlp_hidden": 32}"#,
    )
    .unwrap();
    // No --dtype keeps the checkpoint's types (cls_token is float16 there).
    for (dtype, expected) in [
        ("keep", "tiny_dino_expected.safetensors"),
        ("f16", "tiny_dino_expected_f16.safetensors"),
        ("bf16", "tiny_dino_expected_bf16.safetensors"),
    ] {
        for input in ["tiny_dino_teacher.pth", "tiny_dino_teacher_legacy.pth"] {
            let out = dir.path().join(format!("{dtype}.safetensors"));
            let input = fx(input);
            let mut args =
                vec!["weights", "convert", "--config", s(&config), "--input", &input, "--output", s(&out), "--json"];
            if dtype != "keep" {
                args.extend(["--dtype", dtype]);
            }
            let j = labelscope_ok(&args);
            let j: serde_json::Value = serde_json::from_str(&j).unwrap();
            assert_eq!((j["model"].as_str(), j["state_dict_key"].as_str()), (Some("custom"), Some("teacher")));
            assert_eq!(j["metadata"]["labelscope_arch"], "dino_vit");
            let got = labelscope_core::npy::SafeTensors::open(&out).unwrap();
            let want = labelscope_core::npy::SafeTensors::open(Path::new(&fx(expected))).unwrap();
            assert_eq!(got.names(), want.names());
            for n in want.names() {
                let (g, w) = (got.read(&n).unwrap(), want.read(&n).unwrap());
                assert!(g.shape == w.shape && g.raw_bytes() == w.raw_bytes(), "{input} {dtype} {n}");
            }
        }
    }
}

#[test]
fn bad_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let o = s(&out).to_string();
    let conv = |model: &str, input: &str| -> String {
        let e = labelscope_err(&["weights", "convert", "--model", model, "--input", input, "--output", &o]);
        assert!(!out.exists(), "{input}: no output file");
        assert!(files(dir.path()).iter().all(|f| f.extension().is_some_and(|e| e == "pth")), "{input}: nothing left");
        e
    };
    let e = conv("dino_vits16", &fx("dino_vits16_missing.pth"));
    assert!(
        e.contains(
            "dino_vits16_missing.pth: does not match model dino_vits16: missing tensor \"blocks.11.mlp.fc2.bias\""
        ),
        "{e}"
    );
    let e = conv("dino_vits16", &fx("dino_vits16_badshape.pth"));
    assert!(
        e.contains("dino_vits16_badshape.pth")
            && e.contains("\"blocks.5.attn.qkv.weight\" has shape [1152, 383], expected [1152, 384]"),
        "{e}"
    );
    let e = conv("dino_vits16", &fx("dino_vits16_intdtype.pth"));
    assert!(e.contains("\"norm.bias\" has dtype I64"), "{e}");
    let e = conv("dinov2_vits14", &fx("resnet50_expanded.pth"));
    assert!(
        e.contains("missing tensor \"cls_token\"") && e.contains("match registry model(s) resnet50, resnet50_v2"),
        "{e}"
    );
    let e = conv("resnet50", &fx("resnet50_expanded.pth"));
    assert!(
        e.contains("resnet50_expanded.pth: SHA-256") && e.contains("0676ba61") && e.contains("--allow-unofficial"),
        "{e}"
    );
    let e = conv("dino_vits16", &fx("evil.pth"));
    assert!(e.contains("evil.pth") && e.contains("refusing to load the Python global \"posix.system\""), "{e}");
    assert!(!repo_root().join("labelscope_pwned_marker").exists());
    let e = conv("dino_vits17", &fx("dino_vits16_expanded.pth"));
    assert!(e.contains("unknown model \"dino_vits17\"") && e.contains("dino_vits16"), "{e}");
    let missing = dir.path().join("nope.pth");
    let e = conv("dino_vits16", s(&missing));
    assert!(e.contains("nope.pth"), "{e}");
    // Truncated checkpoints (a copy cut in the middle and one cut in the zip directory).
    let bytes = std::fs::read(fx("tiny_dino_teacher.pth")).unwrap();
    for (i, cut) in [bytes.len() / 2, bytes.len() - 10].into_iter().enumerate() {
        let p = dir.path().join(format!("cut{i}.pth"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = conv("dino_vits16", s(&p));
        assert!(e.contains(&format!("cut{i}.pth")), "{e}");
    }
    // An existing output is left as it was when the conversion fails.
    std::fs::write(&out, b"old").unwrap();
    let e = labelscope_err(&[
        "weights",
        "convert",
        "--model",
        "dino_vits16",
        "--input",
        &fx("dino_vits16_badshape.pth"),
        "--output",
        &o,
    ]);
    assert!(e.contains("blocks.5.attn.qkv.weight"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    std::fs::remove_file(&out).unwrap();
    // No model: refused, since nothing could be checked.
    let e = labelscope_err(&["weights", "convert", "--input", &fx("tiny_dtypes.pth"), "--output", &o]);
    assert!(e.contains("--model") && e.contains("tiny_dtypes.pth"), "{e}");
    // Usage errors exit with 2.
    let u =
        labelscope(&["weights", "convert", "--model", "resnet50", "--input", "x.pth", "--output", &o, "--dtype", "i8"]);
    assert_eq!(u.status.code(), Some(2));
    // --allow-unofficial accepts fine-tuned weights; verify shows the mismatch as accepted.
    let t = labelscope_ok(&[
        "weights",
        "convert",
        "--model",
        "resnet50",
        "--input",
        &fx("resnet50_expanded.pth"),
        "--output",
        &o,
        "--dtype",
        "bf16",
        "--allow-unofficial",
    ]);
    assert!(
        t.contains("267 tensors") && t.contains("dropped 53") && t.contains("differs from the published 0676ba61"),
        "{t}"
    );
    let e = labelscope_err(&["weights", "verify", &o]);
    assert!(e.contains("out.safetensors") && e.contains("0676ba61"), "{e}");
    let v = labelscope_ok(&["weights", "verify", &o, "--allow-unofficial"]);
    assert!(v.contains("ok, model resnet50: 267 tensors (267 BF16), 25,557,032 parameters"), "{v}");
}

/// A one-thread HTTP server on 127.0.0.1 answering each connection with the next
/// of `responses` (raw bytes), then stopping. Returns its base URL.
fn serve(responses: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        for resp in responses {
            let (mut stream, _) = listener.accept().unwrap();
            let mut r = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = stream.write_all(&resp);
        }
    });
    (url, h)
}

fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    v.extend_from_slice(body);
    v
}

#[test]
fn fetch_from_a_local_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dino.pth");
    let body = std::fs::read(fx("dino_vits16_expanded.pth")).unwrap();
    // A redirect, then the file in chunked encoding.
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(5000) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let redirect = b"HTTP/1.1 302 Found\r\nLocation: /mirror/dino.pth\r\nContent-Length: 0\r\n\r\n".to_vec();
    let (url, h) = serve(vec![redirect, chunked]);
    let t = labelscope_ok(&[
        "weights",
        "fetch",
        "--model",
        "dino_vits16",
        "--url",
        &format!("{url}/dino.pth"),
        "--output",
        s(&out),
    ]);
    h.join().unwrap();
    assert!(t.contains(&format!("bytes from {url}/mirror/dino.pth")) && t.contains("no published checksum"), "{t}");
    assert_eq!(std::fs::read(&out).unwrap(), body);
    assert_eq!(files(dir.path()), vec![out.clone()]);
    // The same bytes as a resnet50 download: the SHA-256 prefix 0676ba61 does not match.
    let r50 = std::fs::read(fx("resnet50_expanded.pth")).unwrap();
    let out2 = dir.path().join("r50.pth");
    let (url, h) = serve(vec![ok_response(&r50)]);
    let e = labelscope_err(&[
        "weights",
        "fetch",
        "--model",
        "resnet50",
        "--url",
        &format!("{url}/r.pth"),
        "--output",
        s(&out2),
    ]);
    h.join().unwrap();
    assert!(e.contains("r50.pth") && e.contains("0676ba61") && e.contains("nothing was written"), "{e}");
    // A body cut short (Content-Length says more).
    let mut cut = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    cut.extend_from_slice(&body[..body.len() / 2]);
    let (url, h) = serve(vec![cut]);
    let e = labelscope_err(&[
        "weights",
        "fetch",
        "--model",
        "dino_vits16",
        "--url",
        &format!("{url}/d.pth"),
        "--output",
        s(&out2),
    ]);
    h.join().unwrap();
    assert!(e.contains("cut short") && e.contains(&format!("{} of {} bytes", body.len() / 2, body.len())), "{e}");
    // Another model's weights, a 404, and the registry's https URL.
    let (url, h) = serve(vec![ok_response(&body), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()]);
    let e = labelscope_err(&[
        "weights",
        "fetch",
        "--model",
        "dino_vitb16",
        "--url",
        &format!("{url}/d.pth"),
        "--output",
        s(&out2),
    ]);
    assert!(e.contains("not a valid dino_vitb16 checkpoint") && e.contains("\"cls_token\""), "{e}");
    let e = labelscope_err(&[
        "weights",
        "fetch",
        "--model",
        "dino_vits16",
        "--url",
        &format!("{url}/x.pth"),
        "--output",
        s(&out2),
    ]);
    h.join().unwrap();
    assert!(e.contains("HTTP status 404"), "{e}");
    let e = labelscope_err(&["weights", "fetch", "--model", "dino_vits16", "--output", s(&out2)]);
    assert!(e.contains("https is not supported") && e.contains("dl.fbaipublicfiles.com"), "{e}");
    assert_eq!(files(dir.path()), vec![out], "no partial download left");
}

/// The converted file loads in `labelscope features` (labelscope-nn) and gives
/// the same features as the tensors torch saved (written by safetensors.torch).
#[test]
fn converted_weights_load_in_features() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.json");
    std::fs::write(
        &config,
        r#"{"labelscope_arch": "dino_vit", "embed_dim": 8, "depth": 2, "num_heads": 2, "patch_size": 4, "img_size": 16, "mlp_hidden": 32}"#,
    )
    .unwrap();
    let conv = dir.path().join("conv.safetensors");
    let input = fx("tiny_dino_teacher.pth");
    labelscope_ok(&[
        "weights",
        "convert",
        "--config",
        s(&config),
        "--input",
        &input,
        "--output",
        s(&conv),
        "--dtype",
        "f32",
    ]);
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    image::RgbImage::from_fn(36, 28, |x, y| image::Rgb([(x * 7) as u8, (y * 9) as u8, 90]))
        .save(imgs.join("a.png"))
        .unwrap();
    let expected = fx("tiny_dino_expected.safetensors");
    let mut outs = Vec::new();
    for (k, w) in [s(&conv), expected.as_str()].into_iter().enumerate() {
        let out = dir.path().join(format!("f{k}"));
        let o = out.to_str().unwrap().to_string();
        labelscope_ok(&[
            "features",
            "--arch",
            "8:2:2:4",
            "--weights",
            w,
            "--images",
            s(&imgs),
            "--size",
            "32",
            "--dtype",
            "f32",
            "-q",
            "--out",
            &o,
        ]);
        outs.push(std::fs::read(out.join("a.npy")).unwrap());
    }
    assert!(outs[0].len() > 128 && outs[0] == outs[1], "features from the converted file differ");
}
