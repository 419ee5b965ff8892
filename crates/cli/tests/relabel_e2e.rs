//! `labelscope relabel` end to end on generated images with known planted
//! objects, a hand-made ViT whose patch tokens identify a patch's colour,
//! proposals = the planted masks (plus the background), and dense label maps
//! drawn from the planted masks: cache → select → train → infer → aggregate
//! must recover every image's planted set of classes; `relabel run` gives the
//! same labels and then skips every stage; an interrupted cache resumes to
//! the same bytes; bad inputs are refused naming the file.
//!
//! The backbone (dim 8, patch 8, one block): the patch embedding computes
//! the patch's mean colour in [0, 1] per channel (weights `std_c / 64`, bias
//! `mean_c`, undoing the ImageNet normalisation) into dims 0..3 and its
//! negation into dims 3..6 (dims 6, 7 = 0); the position embedding, the CLS
//! token and every attention/MLP weight are 0, so the block is the identity
//! and the output is the final LayerNorm of the embedding. A pure red cell
//! `[1,0,0,-1,0,0,0,0]` has mean 0 and variance 2/8, so its token is
//! `[2,0,0,-2,0,0,0,0]` (to 1e-5 from ε = 1e-6); a black cell is all zero.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use labelscope_core::rle::Rle;

const SIZE: usize = 64;
const PATCH: usize = 8;
const DIM: usize = 8;
const CLASSES: usize = 4;
const IMAGES: usize = 24;
/// Class colours: red, green, blue, yellow (180, 180, 0).
const COLOURS: [[u8; 3]; CLASSES] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [180, 180, 0]];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A planted object: class and pixel rectangle [x0, x1) × [y0, y1).
#[derive(Clone, Copy, Debug)]
struct Obj {
    class: usize,
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

/// Image i: 1 + i % 3 objects of distinct classes, the first of class i % 4
/// (the original label, so originals are balanced), in distinct quadrants;
/// each object is a 16×16 or 16×24 block aligned to the 8-px cells, one cell
/// away from the quadrant border (so no cell mixes two objects).
fn planted(i: usize) -> Vec<Obj> {
    let n = 1 + i % 3;
    let first = i % CLASSES;
    let step = 1 + (i / CLASSES) % 3;
    let mut out = Vec::new();
    for k in 0..n {
        let class = (first + k * step) % CLASSES;
        let q = (i + k) % 4;
        let (qx, qy) = (q % 2, q / 2);
        let tall = (i + k).is_multiple_of(2);
        let (x0, y0) = (qx * 32 + 8, qy * 32 + 8);
        out.push(Obj { class, x0, y0, x1: x0 + 16, y1: y0 + if tall { 24 } else { 16 } });
    }
    // distinct classes: step in 1..=3 and n <= 3 keep (first + k*step) mod 4 distinct
    // for step 1 and 3; for step 2 only k = 0, 1 are distinct, so cap n there.
    if step == 2 {
        out.truncate(2);
    }
    out
}

fn name(i: usize) -> String {
    format!("img_{i:02}.png")
}

fn mask_of(o: &Obj) -> Vec<bool> {
    let mut m = vec![false; SIZE * SIZE];
    for y in o.y0..o.y1 {
        for x in o.x0..o.x1 {
            m[y * SIZE + x] = true;
        }
    }
    m
}

fn write_f32_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (n, shape, data) in tensors {
        header.insert(
            n.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [off, off + data.len() * 4]}),
        );
        off += data.len() * 4;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    for (_, _, data) in tensors {
        bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    }
    std::fs::write(path, bytes).unwrap();
}

fn write_vit(dir: &Path) -> (PathBuf, PathBuf) {
    let mean = [0.485f32, 0.456, 0.406];
    let std = [0.229f32, 0.224, 0.225];
    let pp = (PATCH * PATCH) as f32;
    let mut w = vec![0f32; DIM * 3 * PATCH * PATCH];
    let mut b = vec![0f32; DIM];
    for c in 0..3 {
        for sign in [1.0f32, -1.0] {
            let d = if sign > 0.0 { c } else { 3 + c };
            for k in 0..PATCH * PATCH {
                w[(d * 3 + c) * PATCH * PATCH + k] = sign * std[c] / pp;
            }
            b[d] = sign * mean[c];
        }
    }
    let g = SIZE / PATCH;
    let z = |n: usize| vec![0f32; n];
    let ones = vec![1f32; DIM];
    let t: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("cls_token", vec![1, 1, DIM], z(DIM)),
        ("pos_embed", vec![1, 1 + g * g, DIM], z((1 + g * g) * DIM)),
        ("patch_embed.proj.weight", vec![DIM, 3, PATCH, PATCH], w),
        ("patch_embed.proj.bias", vec![DIM], b),
        ("blocks.0.norm1.weight", vec![DIM], ones.clone()),
        ("blocks.0.norm1.bias", vec![DIM], z(DIM)),
        ("blocks.0.attn.qkv.weight", vec![3 * DIM, DIM], z(3 * DIM * DIM)),
        ("blocks.0.attn.qkv.bias", vec![3 * DIM], z(3 * DIM)),
        ("blocks.0.attn.proj.weight", vec![DIM, DIM], z(DIM * DIM)),
        ("blocks.0.attn.proj.bias", vec![DIM], z(DIM)),
        ("blocks.0.norm2.weight", vec![DIM], ones.clone()),
        ("blocks.0.norm2.bias", vec![DIM], z(DIM)),
        ("blocks.0.mlp.fc1.weight", vec![DIM, DIM], z(DIM * DIM)),
        ("blocks.0.mlp.fc1.bias", vec![DIM], z(DIM)),
        ("blocks.0.mlp.fc2.weight", vec![DIM, DIM], z(DIM * DIM)),
        ("blocks.0.mlp.fc2.bias", vec![DIM], z(DIM)),
        ("norm.weight", vec![DIM], ones),
        ("norm.bias", vec![DIM], z(DIM)),
    ];
    let weights = dir.join("tiny_vit.safetensors");
    write_f32_safetensors(&weights, &t);
    let config = dir.join("tiny_vit.json");
    std::fs::write(&config, format!(r#"{{"patch": {PATCH}, "dim": {DIM}, "depth": 1, "heads": 2, "mlp_ratio": 1}}"#))
        .unwrap();
    (weights, config)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    images: PathBuf,
    weights: PathBuf,
    config: PathBuf,
    proposals: PathBuf,
    /// The planted masks only (no background proposal).
    objects: PathBuf,
    maps: PathBuf,
    labels: PathBuf,
    /// id → planted classes
    truth: BTreeMap<String, BTreeSet<u32>>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let images = root.join("images");
    let maps = root.join("maps");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&maps).unwrap();
    let (weights, config) = write_vit(&root);
    let mut coco_images = Vec::new();
    let mut anns = Vec::new();
    let mut labels = String::from("filename\tlabel\n");
    let mut truth = BTreeMap::new();
    let g = SIZE / PATCH;
    for i in 0..IMAGES {
        let objs = planted(i);
        let mut img = image::RgbImage::new(SIZE as u32, SIZE as u32);
        for o in &objs {
            for y in o.y0..o.y1 {
                for x in o.x0..o.x1 {
                    img.put_pixel(x as u32, y as u32, image::Rgb(COLOURS[o.class]));
                }
            }
        }
        img.save(images.join(name(i))).unwrap();
        coco_images.push(serde_json::json!({"id": i + 1, "file_name": name(i), "width": SIZE, "height": SIZE}));
        let mut background = vec![true; SIZE * SIZE];
        for o in &objs {
            let m = mask_of(o);
            for (b, &v) in background.iter_mut().zip(&m) {
                *b &= !v;
            }
            let rle = Rle::encode(&m, SIZE, SIZE).unwrap().to_coco();
            anns.push((i + 1, rle, false));
        }
        anns.push((i + 1, Rle::encode(&background, SIZE, SIZE).unwrap().to_coco(), true));
        // Dense label map [C, 8, 8]: logit 10 where a cell is covered by an object of class c.
        let mut map = vec![0f32; CLASSES * g * g];
        for o in &objs {
            for cy in o.y0 / PATCH..o.y1 / PATCH {
                for cx in o.x0 / PATCH..o.x1 / PATCH {
                    map[(o.class * g + cy) * g + cx] = 10.0;
                }
            }
        }
        let mut bytes = labelscope_core::npy::header_bytes("<f4", &[CLASSES, g, g]);
        bytes.extend(map.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(maps.join(format!("img_{i:02}.npy")), bytes).unwrap();
        labels.push_str(&format!("{}\t{}\n", name(i), objs[0].class));
        truth.insert(format!("img_{i:02}"), objs.iter().map(|o| o.class as u32).collect());
    }
    let coco_file = |with_background: bool| {
        let annotations: Vec<serde_json::Value> = anns
            .iter()
            .filter(|a| with_background || !a.2)
            .enumerate()
            .map(|(k, (img, rle, _))| {
                serde_json::json!({"id": k + 1, "image_id": img, "category_id": 1, "segmentation": rle,
                               "bbox": [0, 0, 1, 1], "area": 1, "score": 1.0, "iscrowd": 0})
            })
            .collect();
        serde_json::json!({"info": {}, "images": coco_images, "annotations": annotations,
                           "categories": [{"id": 1, "name": "fg", "supercategory": ""}]})
        .to_string()
    };
    let proposals = root.join("proposals.json");
    std::fs::write(&proposals, coco_file(true)).unwrap();
    let objects = root.join("objects.json");
    std::fs::write(&objects, coco_file(false)).unwrap();
    let labels_path = root.join("labels.tsv");
    std::fs::write(&labels_path, labels).unwrap();
    Fixture { _tmp: tmp, root, images, weights, config, proposals, objects, maps, labels: labels_path, truth }
}

/// Labels with p > 0.5 per image id from a TSV of the published layout.
fn tsv_sets(path: &Path) -> BTreeMap<String, BTreeSet<u32>> {
    let recs = labelscope_relabel::output::read_tsv(path, Some(CLASSES)).unwrap();
    recs.into_iter()
        .map(|r| {
            let id = labelscope_core::ids::join_key(&r.filename).to_string();
            (id, r.labels.iter().filter(|l| l.1 > 0.5).map(|l| l.0).collect())
        })
        .collect()
}

fn cache_args<'a>(f: &'a Fixture, out: &'a Path) -> Vec<&'a str> {
    vec![
        "relabel",
        "cache",
        "--images",
        s(&f.images),
        "--out",
        s(out),
        "--config",
        s(&f.config),
        "--weights",
        s(&f.weights),
        "--recipe",
        "fixed64",
        "--batch-size",
        "4",
        "-q",
    ]
}

const TRAIN: [&str; 10] =
    ["--head", "linear", "--epochs", "60", "--train-batch-size", "8", "--lr", "0.5", "--seed", "3"];

#[test]
fn relabel_pipeline_recovers_planted_labels() {
    let f = fixture();
    let cache = f.root.join("cache");
    labelscope_ok(&cache_args(&f, &cache));

    // The cached tokens are what the hand-made backbone computes (f16, within 2e-3).
    let fc = labelscope_relabel::cache::FeatureCache::open(&cache).unwrap();
    assert_eq!(fc.len(), IMAGES);
    let img0 = fc.get("img_00").unwrap();
    assert_eq!((img0.h, img0.w), (8, 8));
    let v = img0.patches_f32();
    let o = planted(0)[0];
    let cell = (o.y0 / PATCH) * 8 + o.x0 / PATCH; // inside the class-0 (red) object
    let want_red = [2.0f32, 0.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0];
    for d in 0..DIM {
        assert!((v[cell * DIM + d] - want_red[d]).abs() < 2e-3, "red cell dim {d}: {}", v[cell * DIM + d]);
        assert!(v[d].abs() < 2e-3, "black cell dim {d}: {}", v[d]); // cell (0, 0) is background
    }
    drop(fc);
    // images.jsonl: one geometry line per image, the whole 64x64 image for fixed64.
    let geo = std::fs::read_to_string(cache.join("images.jsonl")).unwrap();
    assert_eq!(geo.lines().count(), IMAGES);
    let g0: serde_json::Value = serde_json::from_str(geo.lines().next().unwrap()).unwrap();
    assert_eq!((g0["id"].as_str(), g0["width"].as_u64(), g0["x1"].as_f64()), (Some("img_00"), Some(64), Some(64.0)));

    // Select: with the default target (the image's label) exactly the object of the
    // original class is kept per image (its map probability is ~0.99 > 0.75; the
    // background and the other objects give the label < 0.75).
    let regions = f.root.join("regions");
    labelscope_ok(&[
        "relabel",
        "select",
        "--cache",
        s(&cache),
        "--proposals",
        s(&f.proposals),
        "--maps",
        s(&f.maps),
        "--labels",
        s(&f.labels),
        "--out",
        s(&regions),
        "-q",
    ]);
    let r = labelscope_relabel::pipeline::Regions::read(&regions.join("regions.safetensors")).unwrap();
    assert_eq!((r.len(), r.dim, r.classes), (IMAGES, DIM, CLASSES));
    for (k, &img) in r.image.iter().enumerate() {
        let i: usize = r.images[img][4..].parse().unwrap();
        assert_eq!(r.labels[k] as usize, planted(i)[0].class, "region {k}");
        // a whole-object mask pools to the object's pure colour token
        let c = planted(i)[0].class;
        let feat = &r.features[k * DIM..(k + 1) * DIM];
        if c == 0 {
            for d in 0..DIM {
                assert!((feat[d] - want_red[d]).abs() < 2e-3, "region {k} dim {d}");
            }
        }
    }
    assert_eq!(std::fs::read_to_string(regions.join("regions.jsonl")).unwrap().lines().count(), IMAGES);

    // Train, infer, aggregate.
    let head = f.root.join("head");
    let mut t = vec!["relabel", "train", "--regions", "", "--out", s(&head), "-q"];
    let rp = regions.join("regions.safetensors");
    t[3] = s(&rp);
    t.extend(TRAIN);
    let out = labelscope_ok(&t);
    assert!(out.contains("held-out"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(head.join("heldout.json")).unwrap()).unwrap();
    assert_eq!(report["heldout_top1"].as_f64(), Some(1.0), "{report}");
    assert!(head.join("head.safetensors").exists() && head.join("head.json").exists());
    // Training again into the same folder: refused without --resume; with --resume
    // it continues from the final checkpoint (nothing left to do) to the same head;
    // with another learning rate the checkpoint is refused naming the field.
    let head_bytes = std::fs::read(head.join("head.safetensors")).unwrap();
    let e = labelscope_err(&t);
    assert!(e.contains("checkpoints") && e.contains("already holds a checkpoint"), "{e}");
    let mut tr = t.clone();
    tr.push("--resume");
    labelscope_ok(&tr);
    assert_eq!(std::fs::read(head.join("head.safetensors")).unwrap(), head_bytes);
    let mut tl = tr.clone();
    let lr = tl.iter().position(|a| *a == "--lr").unwrap();
    tl[lr + 1] = "0.25";
    let e = labelscope_err(&tl);
    assert!(e.contains("the checkpoint does not match") && e.contains("lr"), "{e}");
    let preds = f.root.join("predictions.jsonl");
    let hp = head.join("head.safetensors");
    labelscope_ok(&[
        "relabel",
        "infer",
        "--cache",
        s(&cache),
        "--proposals",
        s(&f.proposals),
        "--head",
        s(&hp),
        "--out",
        s(&preds),
        "--chunk",
        "4",
        "-q",
    ]);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&preds).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), IMAGES);
    for l in &lines {
        let i: usize = l["id"].as_str().unwrap()[4..].parse().unwrap();
        assert_eq!(l["proposals"].as_array().unwrap().len(), planted(i).len() + 1);
        assert_eq!(l["global"].as_array().unwrap().len(), CLASSES.min(5));
    }
    // Resume of an interrupted inference (chunks of 4 images): the partial output holds
    // 10 complete lines and half of the 11th, next to the description of its inputs;
    // the resumed run keeps the 2 whole chunks (8 images) and redoes the rest.
    let full = std::fs::read_to_string(&preds).unwrap();
    let fnv = |p: &Path| {
        std::fs::read(p)
            .unwrap()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    };
    let run_json = |k: usize| {
        serde_json::json!({"cache": s(&cache), "proposals": s(&f.proposals), "proposals_fnv1a": fnv(&f.proposals),
                           "head": s(&hp), "head_fnv1a": fnv(&hp), "top_k": k, "chunk": 4})
        .to_string()
    };
    let part = PathBuf::from(format!("{}.partial", s(&preds)));
    let part_json = PathBuf::from(format!("{}.partial.json", s(&preds)));
    let first: String = full.lines().take(10).map(|l| format!("{l}\n")).collect();
    std::fs::write(&part, format!("{first}{}", &full.lines().nth(10).unwrap()[..20])).unwrap();
    std::fs::write(&part_json, run_json(5)).unwrap();
    std::fs::remove_file(&preds).unwrap();
    let infer_args = [
        "relabel",
        "infer",
        "--cache",
        s(&cache),
        "--proposals",
        s(&f.proposals),
        "--head",
        s(&hp),
        "--out",
        s(&preds),
        "--chunk",
        "4",
        "-q",
    ];
    let o = labelscope(&infer_args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("(8 from an interrupted run)"), "{err}");
    assert_eq!(std::fs::read_to_string(&preds).unwrap(), full);
    assert!(!part.exists() && !part_json.exists());
    // A partial output of other inputs (here top-k 3) is refused.
    std::fs::write(&part, first).unwrap();
    std::fs::write(&part_json, run_json(3)).unwrap();
    let e = labelscope_err(&infer_args);
    assert!(e.contains(".partial") && e.contains("other inputs"), "{e}");
    std::fs::remove_file(&part).unwrap();
    std::fs::remove_file(&part_json).unwrap();

    // Without any global signal the labeler alone must find every planted class
    // (p > 0.5) and nothing else; the background proposal (all-zero features)
    // stays below 0.5 for every class.
    let tsv_none = f.root.join("labels_none.tsv");
    labelscope_ok(&["relabel", "aggregate", "--predictions", s(&preds), "--global", "none", "--tsv", s(&tsv_none)]);
    assert_eq!(tsv_sets(&tsv_none), f.truth);
    // Local-Hard at 0.5 without a global signal: the same sets, every value 1.
    let tsv_hard = f.root.join("labels_hard.tsv");
    labelscope_ok(&[
        "relabel",
        "aggregate",
        "--predictions",
        s(&preds),
        "--local",
        "hard",
        "--tau",
        "0.5",
        "--global",
        "none",
        "--tsv",
        s(&tsv_hard),
    ]);
    assert_eq!(tsv_sets(&tsv_hard), f.truth);
    for r in labelscope_relabel::output::read_tsv(&tsv_hard, Some(CLASSES)).unwrap() {
        assert!(r.labels.iter().all(|l| l.1 == 1.0), "{r:?}");
    }
    // With the global prediction merged, labels can only be added (element-wise max).
    let tsv_glob = f.root.join("labels_global.tsv");
    labelscope_ok(&[
        "relabel",
        "aggregate",
        "--predictions",
        s(&preds),
        "--global",
        "prediction",
        "--tsv",
        s(&tsv_glob),
    ]);
    for (id, set) in tsv_sets(&tsv_glob) {
        assert!(set.is_superset(&f.truth[&id]), "{id}: {set:?}");
    }

    // Default (Local-Soft + original), every output.
    let (tsv, json, dense) = (f.root.join("out_labels.tsv"), f.root.join("out_labels.json"), f.root.join("soft.npy"));
    let csr = f.root.join("soft");
    let stats = labelscope_ok(&[
        "relabel",
        "aggregate",
        "--predictions",
        s(&preds),
        "--labels",
        s(&f.labels),
        "--proposals",
        s(&f.proposals),
        "--tsv",
        s(&tsv),
        "--json",
        s(&json),
        "--dense",
        s(&dense),
        "--csr",
        s(&csr),
    ]);
    assert_eq!(tsv_sets(&tsv), f.truth);
    let recs = labelscope_relabel::output::read_tsv(&tsv, Some(CLASSES)).unwrap();
    for r in &recs {
        let i: usize = r.filename[4..6].parse().unwrap();
        assert_eq!(r.original, Some(planted(i)[0].class as u32));
        let orig = planted(i)[0].class as u32;
        assert!(r.labels.contains(&(orig, 1.0)), "the original label is merged as 1: {:?}", r.labels);
    }
    // Statistics: images have 1, 2 or 3 planted classes; counted by hand from planted().
    let mut k = [0usize; 5];
    for set in f.truth.values() {
        k[set.len().min(4)] += 1;
    }
    let mean = f.truth.values().map(|s| s.len()).sum::<usize>() as f64 / IMAGES as f64;
    for (n, &c) in k.iter().enumerate().take(4).skip(1) {
        let row = format!("{} | {c} |", n);
        assert!(stats.contains(&row), "stats lack {row:?}:\n{stats}");
    }
    assert!(stats.contains(&format!("mean | {mean:.4}")), "{stats}");
    // Dense export agrees with the TSV (4 decimals).
    let d = labelscope_core::npy::read_npy(&dense).unwrap();
    assert_eq!(d.shape(), &[IMAGES, CLASSES]);
    let dv = d.to_f32_vec(&dense, "soft").unwrap();
    for (i, r) in recs.iter().enumerate() {
        for &(c, p) in &r.labels {
            assert!((dv[i * CLASSES + c as usize] - p).abs() <= 5e-5 + 1e-6);
        }
    }
    assert!(csr.with_extension("indptr.npy").exists());
    // JSON: per label the proposal ids that gave it, with masks.
    let j = labelscope_relabel::output::read_json(&json).unwrap();
    assert_eq!(j.images.len(), IMAGES);
    let im = &j.images[1]; // img_01: 2 objects
    assert_eq!(im.proposals.len(), planted(1).len() + 1);
    let second = planted(1)[1].class as u32;
    let lab = im.labels.iter().find(|l| l.class == second).unwrap();
    assert_eq!(lab.proposals.len(), 1);
    let pid = lab.proposals[0];
    let prop = im.proposals.iter().find(|p| p.id == pid).unwrap();
    let m = Rle::from_coco(&prop.mask).unwrap().decode();
    assert_eq!(m, mask_of(&planted(1)[1]), "the label's proposal is the planted object");

    // Ambiguity: a calibration set in which red (0) and yellow (3) co-occur in 10
    // images, red is alone in 2 and green alone in 10: the only candidate pair is
    // (0, 3) with N_03 = 10 >= 5 and overlap 10 / min(12, 10) = 1, P(0|3) = 10/10 = 1,
    // P(3|0) = 10/12. Prior propagation p'_0 = min(1, p_0 + p_3), p'_3 = min(1, p_3 +
    // (10/12) p_0) adds yellow to every image with red (p_0 > 0.99 -> p'_3 > 0.82) and
    // red to every image with yellow; elsewhere p_0 and p_3 come from the background
    // proposal (about 0.25 and 0.18), so they stay below 0.5.
    let table = f.root.join("classes.txt");
    std::fs::write(&table, "red\ngreen\nblue\nyellow\n").unwrap();
    let mut cal = serde_json::Map::new();
    for k in 0..22 {
        let set = if k < 10 {
            vec![0, 3]
        } else if k < 12 {
            vec![0]
        } else {
            vec![1]
        };
        cal.insert(format!("cal_{k:02}.png"), serde_json::json!(set));
    }
    let calp = f.root.join("calibration.json");
    std::fs::write(&calp, serde_json::Value::Object(cal).to_string()).unwrap();
    let prior_tsv = f.root.join("prior.tsv");
    let out = labelscope_ok(&[
        "relabel",
        "aggregate",
        "--predictions",
        s(&preds),
        "--labels",
        s(&f.labels),
        "--calibration",
        s(&calp),
        "--class-table",
        s(&table),
        "--prior",
        "--tsv",
        s(&prior_tsv),
    ]);
    assert!(out.contains("ambiguous candidate pairs: 1"), "{out}");
    let want: BTreeMap<String, BTreeSet<u32>> = f
        .truth
        .iter()
        .map(|(id, set)| {
            let mut s = set.clone();
            if set.contains(&0) || set.contains(&3) {
                s.extend([0, 3]);
            }
            (id.clone(), s)
        })
        .collect();
    assert_eq!(tsv_sets(&prior_tsv), want);
    // Threshold pairing only ever adds labels.
    let pair_tsv = f.root.join("pairing.tsv");
    labelscope_ok(&[
        "relabel",
        "aggregate",
        "--predictions",
        s(&preds),
        "--labels",
        s(&f.labels),
        "--calibration",
        s(&calp),
        "--class-table",
        s(&table),
        "--pairing",
        "--tsv",
        s(&pair_tsv),
    ]);
    for (id, set) in tsv_sets(&pair_tsv) {
        assert!(set.is_superset(&f.truth[&id]), "{id}: {set:?}");
    }

    // `relabel run` in one folder gives the same labels, and a second run skips every stage.
    let run_dir = f.root.join("run");
    let mut ra = vec![
        "relabel",
        "run",
        "--images",
        s(&f.images),
        "--proposals",
        s(&f.proposals),
        "--maps",
        s(&f.maps),
        "--labels",
        s(&f.labels),
        "--out",
        s(&run_dir),
        "--config",
        s(&f.config),
        "--weights",
        s(&f.weights),
        "--recipe",
        "fixed64",
        "-q",
    ];
    // Here with the default head (MLP, hidden 1024, dropout 0.5) and optimiser settings
    // but for the schedule length, on the object proposals only: the MLP gives the
    // all-zero background token (never seen in training) p > 0.5 for some class,
    // which the linear head (softmax of its bias, near uniform) does not.
    ra.extend(["--epochs", "60", "--train-batch-size", "8", "--seed", "3", "--global", "none"]);
    ra[5] = s(&f.objects);
    labelscope_ok(&ra);
    assert_eq!(tsv_sets(&run_dir.join("labels.tsv")), f.truth);
    let hc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("head/head.json")).unwrap()).unwrap();
    assert_eq!((hc["kind"].as_str(), hc["hidden"].as_u64()), (Some("mlp"), Some(1024)), "{hc}");
    let o = labelscope(&ra);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for stage in ["cache: complete, skipped", "select:", "train:", "infer:"] {
        assert!(err.contains(stage), "{stage}: {err}");
    }
    assert_eq!(err.matches("skipped").count(), 4, "{err}");
}

#[test]
fn cache_resume_after_losing_work_does_not_duplicate() {
    let f = fixture();
    let cache = f.root.join("cache");
    labelscope_ok(&cache_args(&f, &cache));
    let stem = "shard-00000-of-00001";
    let data = std::fs::read(cache.join(format!("{stem}.safetensors"))).unwrap();
    let index = std::fs::read_to_string(cache.join(format!("{stem}.index.jsonl"))).unwrap();
    assert_eq!(index.lines().count(), IMAGES);
    // Lose work: the index keeps 10 records and half of the 11th line, the
    // completion markers and the merged geometry go; the data file keeps all rows.
    let keep: String = index.lines().take(10).map(|l| format!("{l}\n")).collect();
    let partial = &index.lines().nth(10).unwrap()[..7];
    std::fs::write(cache.join(format!("{stem}.index.jsonl")), format!("{keep}{partial}")).unwrap();
    for f in [format!("{stem}.done.json"), "complete.json".into(), "images.jsonl".into()] {
        std::fs::remove_file(cache.join(f)).unwrap();
    }
    let o = labelscope(&cache_args(&f, &cache));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("14 written now, 10 already there"), "{err}");
    // Same records in the same order: the files are byte-identical to the uninterrupted run.
    assert_eq!(std::fs::read_to_string(cache.join(format!("{stem}.index.jsonl"))).unwrap(), index);
    assert_eq!(std::fs::read(cache.join(format!("{stem}.safetensors"))).unwrap(), data);
    let fc = labelscope_relabel::cache::FeatureCache::open(&cache).unwrap();
    let ids: BTreeSet<&str> = fc.ids().collect();
    assert_eq!((fc.len(), ids.len()), (IMAGES, IMAGES));
    let geo = std::fs::read_to_string(cache.join("images.jsonl")).unwrap();
    let gids: BTreeSet<String> = geo
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((geo.lines().count(), gids.len()), (IMAGES, IMAGES));
    // A third run has nothing to do.
    let o = labelscope(&cache_args(&f, &cache));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 written now, 24 already there"));
}

#[test]
fn bad_inputs_name_the_file() {
    let f = fixture();
    let cache = f.root.join("cache");
    labelscope_ok(&cache_args(&f, &cache));
    let out = f.root.join("regions");
    let select = |maps: &Path, labels: &Path| {
        labelscope_err(&[
            "relabel",
            "select",
            "--cache",
            s(&cache),
            "--proposals",
            s(&f.proposals),
            "--maps",
            s(maps),
            "--labels",
            s(labels),
            "--out",
            s(&out),
            "-q",
        ])
    };
    // ReLabel maps [2, 2, 8, 8] holding the top-2 of each location of the dense maps:
    // every class they leave out has logit 0 in the dense map too, so the scores,
    // the selection and the regions are the same (byte-identical files).
    let relabel_maps = f.root.join("relabel_maps");
    std::fs::create_dir_all(&relabel_maps).unwrap();
    for i in 0..IMAGES {
        let p = f.maps.join(format!("img_{i:02}.npy"));
        let d = labelscope_core::npy::read_npy(&p).unwrap().to_f32_vec(&p, "map").unwrap();
        let mut m = vec![0f32; 2 * 2 * 64];
        for loc in 0..64 {
            let mut order: Vec<usize> = (0..CLASSES).collect();
            order.sort_by(|&a, &b| d[b * 64 + loc].total_cmp(&d[a * 64 + loc]).then(a.cmp(&b)));
            for r in 0..2 {
                m[r * 64 + loc] = d[order[r] * 64 + loc];
                m[(2 + r) * 64 + loc] = order[r] as f32;
            }
        }
        let mut bytes = labelscope_core::npy::header_bytes("<f4", &[2, 2, 8, 8]);
        bytes.extend(m.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(relabel_maps.join(format!("img_{i:02}.npy")), bytes).unwrap();
    }
    let (dense_out, relabel_out) = (f.root.join("r_dense"), f.root.join("r_relabel"));
    for (maps, o, extra) in [(&f.maps, &dense_out, None), (&relabel_maps, &relabel_out, Some("4"))] {
        let mut a = vec![
            "relabel",
            "select",
            "--cache",
            s(&cache),
            "--proposals",
            s(&f.proposals),
            "--maps",
            s(maps),
            "--labels",
            s(&f.labels),
            "--out",
            s(o),
            "-q",
        ];
        if let Some(c) = extra {
            a.extend(["--classes", c]);
        }
        labelscope_ok(&a);
    }
    for file in ["regions.safetensors", "regions.jsonl"] {
        assert_eq!(std::fs::read(dense_out.join(file)).unwrap(), std::fs::read(relabel_out.join(file)).unwrap());
    }
    let e = select(&relabel_maps, &f.labels);
    assert!(e.contains("img_00.npy") && e.contains("--classes"), "{e}");

    // A missing label map.
    let map3 = std::fs::read(f.maps.join("img_03.npy")).unwrap();
    std::fs::remove_file(f.maps.join("img_03.npy")).unwrap();
    let e = select(&f.maps, &f.labels);
    assert!(e.contains("img_03.npy") && e.contains("label map missing"), "{e}");
    assert!(!out.join("regions.safetensors").exists());
    // A map whose id is no cached image is reported.
    std::fs::write(f.maps.join("img_99.npy"), &map3).unwrap();
    std::fs::write(f.maps.join("img_03.npy"), &map3).unwrap();
    let o = labelscope(&[
        "relabel",
        "select",
        "--cache",
        s(&cache),
        "--proposals",
        s(&f.proposals),
        "--maps",
        s(&f.maps),
        "--labels",
        s(&f.labels),
        "--out",
        s(&out),
        "-q",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("1 label maps") && err.contains("img_99"), "{err}");
    std::fs::remove_file(f.maps.join("img_99.npy")).unwrap();
    std::fs::remove_file(out.join("regions.safetensors")).unwrap();
    // A label map of another class count.
    let mut bytes = labelscope_core::npy::header_bytes("<f4", &[5, 8, 8]);
    bytes.extend(vec![0u8; 5 * 64 * 4]);
    std::fs::write(f.maps.join("img_03.npy"), bytes).unwrap();
    let e = select(&f.maps, &f.labels);
    assert!(e.contains("img_03.npy") && e.contains("5 classes"), "{e}");
    std::fs::write(f.maps.join("img_03.npy"), &map3).unwrap();
    // An original label outside the classes: line 6 holds img_04 (header = line 1).
    let bad_labels = f.root.join("bad_labels.tsv");
    let text = std::fs::read_to_string(&f.labels).unwrap().replace("img_04.png\t0", "img_04.png\t7");
    std::fs::write(&bad_labels, text).unwrap();
    let e = select(&f.maps, &bad_labels);
    assert!(e.contains("bad_labels.tsv") && e.contains("line 6") && e.contains("class 7"), "{e}");
    // The aggregation refuses a class outside the head, naming the labels file and line.
    let preds = f.root.join("predictions.jsonl");
    let line = serde_json::json!({"id": "img_04", "file": "img_04.png", "width": 64, "height": 64, "classes": 4,
                                  "proposals": [{"id": 1, "top": [[0, 0.9]]}], "global": [[0, 0.9]]});
    std::fs::write(&preds, format!("{line}\n")).unwrap();
    let e = labelscope_err(&["relabel", "aggregate", "--predictions", s(&preds), "--labels", s(&bad_labels)]);
    assert!(e.contains("bad_labels.tsv") && e.contains("line 6") && e.contains("class 7"), "{e}");
    // Proposals of another image size than the cached image.
    let coco = std::fs::read_to_string(&f.proposals).unwrap();
    let bad_props = f.root.join("bad_props.json");
    let mut v: serde_json::Value = serde_json::from_str(&coco).unwrap();
    v["images"][2]["width"] = serde_json::json!(32);
    v["annotations"] = serde_json::json!([]);
    std::fs::write(&bad_props, v.to_string()).unwrap();
    let e = labelscope_err(&[
        "relabel",
        "select",
        "--cache",
        s(&cache),
        "--proposals",
        s(&bad_props),
        "--maps",
        s(&f.maps),
        "--labels",
        s(&f.labels),
        "--out",
        s(&out),
        "-q",
    ]);
    assert!(e.contains("bad_props.json") && e.contains("img_02") && e.contains("32x64"), "{e}");
    // An empty mask.
    let mut v: serde_json::Value = serde_json::from_str(&coco).unwrap();
    let empty = Rle::encode(&vec![false; SIZE * SIZE], SIZE, SIZE).unwrap().to_coco();
    v["annotations"][3]["segmentation"] = serde_json::to_value(empty).unwrap();
    std::fs::write(&bad_props, v.to_string()).unwrap();
    let e = labelscope_err(&[
        "relabel",
        "select",
        "--cache",
        s(&cache),
        "--proposals",
        s(&bad_props),
        "--maps",
        s(&f.maps),
        "--labels",
        s(&f.labels),
        "--out",
        s(&out),
        "-q",
    ]);
    assert!(e.contains("bad_props.json") && e.contains("annotations[3]") && e.contains("empty"), "{e}");
}

#[test]
fn cache_shards_and_unreadable_images() {
    let f = fixture();
    // Two shards written by two calls: complete only after the second.
    let cache = f.root.join("sharded");
    let mut a = cache_args(&f, &cache);
    a.extend(["--shard", "0/2"]);
    let o = labelscope(&a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("holds 12 images") && err.contains("other shards pending"), "{err}");
    assert!(!cache.join("complete.json").exists() && !cache.join("images.jsonl").exists());
    let mut b = cache_args(&f, &cache);
    b.extend(["--shard", "1/2"]);
    let o = labelscope(&b);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("cache complete"), "{err}");
    let fc = labelscope_relabel::cache::FeatureCache::open(&cache).unwrap();
    assert_eq!(fc.len(), IMAGES);
    assert_eq!(std::fs::read_to_string(cache.join("images.jsonl")).unwrap().lines().count(), IMAGES);
    // Shard 0 holds the ids at even sorted positions.
    let idx = std::fs::read_to_string(cache.join("shard-00000-of-00002.index.jsonl")).unwrap();
    let ids: Vec<String> = idx
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..IMAGES).step_by(2).map(|i| format!("img_{i:02}")).collect();
    assert_eq!(ids, want);

    // A centre-crop recipe: Resize(64) keeps 64x64, CenterCrop(48) starts at
    // round((64 - 48) / 2) = 8, so the 6x6 grid covers [8, 56) x [8, 56).
    let crop = f.root.join("crop");
    let mut c = cache_args(&f, &crop);
    let r = c.iter().position(|x| *x == "fixed64").unwrap();
    c[r] = "resize64-crop48";
    labelscope_ok(&c);
    let g: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(crop.join("images.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    let rect: Vec<f64> = ["x0", "y0", "x1", "y1"].iter().map(|k| g[k].as_f64().unwrap()).collect();
    assert_eq!(rect, [8.0, 8.0, 56.0, 56.0]);
    let fc = labelscope_relabel::cache::FeatureCache::open(&crop).unwrap();
    let im = fc.get("img_00").unwrap();
    assert_eq!((im.h, im.w), (6, 6));

    // An unreadable image stops the stage naming the file, or with --skip-bad is left
    // out (exit status 1), recorded, and the cache is finalized without it.
    std::fs::write(f.images.join("img_99.png"), b"not a png").unwrap();
    let cache = f.root.join("with_bad");
    let e = labelscope_err(&cache_args(&f, &cache));
    assert!(e.contains("img_99.png") && e.contains("--skip-bad"), "{e}");
    let mut c = cache_args(&f, &cache);
    c.push("--skip-bad");
    let e = labelscope_err(&c);
    assert!(e.contains("1 images could not be read") && e.contains("img_99.png"), "{e}");
    let skipped = std::fs::read_to_string(cache.join("shard-00000-of-00001.skipped.jsonl")).unwrap();
    assert_eq!(skipped.lines().count(), 1);
    assert!(skipped.contains("\"id\":\"img_99\""), "{skipped}");
    let fc = labelscope_relabel::cache::FeatureCache::open(&cache).unwrap();
    assert_eq!(fc.len(), IMAGES);
    assert!(!fc.contains("img_99"));
    assert!(cache.join("complete.json").exists());
}
