//! Quality report: overlap groups, per-class precision/recall and the HTML
//! report with its gallery, on hand-made label files whose numbers are
//! worked out by hand below.
//!
//! Fixtures (tests/fixtures/quality): classes c0..c3 named cat, dog, car,
//! tree; `produced.tsv` (τ = 0.5) and `reference.json` (generic JSON,
//! other extensions, so images are joined by id):
//!
//! | image | produced (value)          | A at τ=0.5 | B (reference) | group            | Jaccard | |AΔB| |
//! |-------|---------------------------|------------|---------------|------------------|---------|------|
//! | img1  | 0 (.9), 1 (.7)            | {0,1}      | {0,1}         | exact match      | 1       | 0    |
//! | img2  | 0 (.8), 2 (.6)            | {0,2}      | {0}           | A ⊃ B            | 1/2     | 1    |
//! | img3  | 1 (.9), 3 (.4)            | {1}        | {1,3}         | B ⊃ A            | 1/2     | 1    |
//! | img4  | 2 (.95)                   | {2}        | {0}           | partial, disjoint| 0       | 2    |
//! | img5  | 0 (.6), 3 (.55)           | {0,3}      | {0,1}         | partial          | 1/3     | 2    |
//! | img6  | 1 (.49)                   | {}         | {1}           | B ⊃ A            | 0       | 1    |
//! | img7  | 2 (.9)                    | {2}        | {} (no label) | B empty          | -       | -    |
//! | img8  | 3 (.7)                    | {3}        | not listed    | only in A        |         |      |
//! | img9  | not listed                |            | {2}           | only in B        |         |      |
//!
//! Per class over img1..img6 (img7 has an empty reference and is left out):
//! - cat (0): A in img1,2,5; B in img1,2,4,5 → tp 3, fp 0, fn 1: P 1, R 3/4, F1 6/7
//! - dog (1): A in img1,3; B in img1,3,5,6 → tp 2, fp 0, fn 2: P 1, R 1/2, F1 4/6
//! - car (2): A in img2,4; B none → tp 0, fp 2, fn 0: P 0, R undefined, F1 0
//! - tree (3): A in img5; B in img3 → tp 0, fp 1, fn 1: P 0, R 0, F1 0
//!
//! Micro: tp 5, fp 3, fn 4 → P 5/8 = 0.625, R 5/9 = 0.5556, F1 10/17 = 0.5882.
//! Macro over the 4 classes (undefined = 0): P (1+1+0+0)/4 = 0.5,
//! R (0.75+0.5+0+0)/4 = 0.3125, F1 (6/7 + 2/3)/4 = 0.380952.
//!
//! Gallery order (Jaccard up, |AΔB| down, name): img4 (0, 2), img6 (0, 1),
//! img5 (1/3), img2 (1/2, "img2" < "img3"), img3.

use std::path::{Path, PathBuf};

use labelscope_core::analysis::Relation;
use labelscope_core::classes::ClassTable;
use labelscope_core::labels::load_labels;
use labelscope_core::rle::Rle;
use labelscope_relabel::output::{JsonImage, JsonLabel, JsonOutput, JsonProposal};
use labelscope_relabel::quality::{evaluate, load_produced, write_report, GallerySources, QualityReport};
use labelscope_relabel::Error;
use labelscope_vision::overlay::{MASK_ALPHA, PALETTE};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quality")
}

fn classes() -> ClassTable {
    ClassTable::from_path(&fixtures().join("classes.txt")).unwrap()
}

fn report(tau: f32) -> QualityReport {
    let cl = classes();
    let produced = load_produced(&fixtures().join("produced.tsv"), Some(cl.len())).unwrap();
    let a = produced.sets(tau).unwrap();
    let b = load_labels(&fixtures().join("reference.json"), None, &cl).unwrap().to_sets().unwrap();
    evaluate(&a, &b, tau, 5)
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
}

#[test]
fn groups_and_per_class_by_hand() {
    let r = report(0.5);
    let c = &r.comparison;
    assert_eq!((c.compared, c.only_a, c.only_b, c.disjoint), (7, 1, 1, 1));
    let counts: Vec<(Relation, u64)> = c.groups.iter().map(|g| (g.relation, g.count)).collect();
    assert_eq!(
        counts,
        vec![
            (Relation::BEmpty, 1),
            (Relation::Exact, 1),
            (Relation::ASupersetOfB, 1),
            (Relation::BSupersetOfA, 2),
            (Relation::Partial, 2)
        ]
    );
    assert_eq!((r.evaluated, r.empty_reference), (6, 1));

    let rows: Vec<(u32, u64, u64, u64, u64, u64)> =
        r.classes.iter().map(|q| (q.class, q.support, q.predicted, q.tp, q.fp, q.fn_)).collect();
    assert_eq!(rows, vec![(0, 4, 3, 3, 0, 1), (1, 4, 2, 2, 0, 2), (2, 0, 2, 0, 2, 0), (3, 1, 1, 0, 1, 1)]);
    let q = &r.classes;
    assert_eq!((q[0].precision, q[0].recall), (Some(1.0), Some(0.75)));
    close(q[0].f1.unwrap(), 6.0 / 7.0);
    close(q[1].f1.unwrap(), 4.0 / 6.0);
    assert_eq!((q[2].precision, q[2].recall, q[2].f1), (Some(0.0), None, Some(0.0)));
    assert_eq!((q[3].precision, q[3].recall, q[3].f1), (Some(0.0), Some(0.0), Some(0.0)));

    let o = &r.overall;
    assert_eq!((o.tp, o.fp, o.fn_, o.classes), (5, 3, 4, 4));
    close(o.micro_precision.unwrap(), 5.0 / 8.0);
    close(o.micro_recall.unwrap(), 5.0 / 9.0);
    close(o.micro_f1.unwrap(), 10.0 / 17.0);
    close(o.macro_precision, 0.5);
    close(o.macro_recall, 0.3125);
    close(o.macro_f1, (6.0 / 7.0 + 2.0 / 3.0) / 4.0);

    let order: Vec<(&str, Relation)> = r.disagreements.iter().map(|d| (d.image.as_str(), d.relation)).collect();
    assert_eq!(
        order,
        vec![
            ("img4.JPEG", Relation::Partial),
            ("img6.JPEG", Relation::BSupersetOfA),
            ("img5.JPEG", Relation::Partial),
            ("img2.JPEG", Relation::ASupersetOfB),
            ("img3.JPEG", Relation::BSupersetOfA),
        ]
    );
    close(r.disagreements[2].jaccard, 1.0 / 3.0);
    assert_eq!(r.disagreements[2].sym_diff, 2);
}

#[test]
fn threshold_moves_images_between_groups() {
    // τ = 0.4: img3 gets {1,3} and img6 gets {1}: both exact now, so the
    // exact group is img1, img3, img6 and B ⊃ A is empty.
    let r = report(0.4);
    let g = &r.comparison.groups;
    assert_eq!((g[1].count, g[3].count), (3, 0));
    // tree (3): A in img3, img5; B in img3 → tp 1, fp 1, fn 0.
    let tree = r.classes.iter().find(|q| q.class == 3).unwrap();
    assert_eq!((tree.tp, tree.fp, tree.fn_), (1, 1, 0));
}

/// 8x6 mask: columns `x0..x1` of every row.
fn cols(x0: usize, x1: usize) -> Vec<bool> {
    (0..6).flat_map(|_| (0..8).map(move |x| (x0..x1).contains(&x))).collect()
}

fn rgb(w: u32, h: u32, v: u8) -> labelscope_vision::RgbImage {
    labelscope_vision::RgbImage::from_raw(w, h, vec![v; (w * h * 3) as usize]).unwrap()
}

fn label(class: u32, p: f32, proposals: Vec<usize>) -> JsonLabel {
    JsonLabel { class, name: None, p, proposals, original: false, global: false }
}

fn image(file: &str, w: usize, h: usize, masks: &[Vec<bool>], labels: Vec<JsonLabel>) -> JsonImage {
    let proposals = masks
        .iter()
        .enumerate()
        .map(|(k, m)| JsonProposal { id: 10 + k, mask: Rle::encode(m, h, w).unwrap().to_coco() })
        .collect();
    JsonImage { file: file.into(), original: None, width: w, height: h, proposals, labels }
}

#[test]
fn html_report_with_gallery() {
    let dir = tempfile::tempdir().unwrap();
    // JSON output with the TSV's values; masks: img4 car = columns 0..4;
    // img2 cat = columns 0..2, car = proposals 11 + 12 (columns 4..6 and 6..8);
    // img5 says 8x6 but its image is 10x6.
    let json = JsonOutput {
        images: vec![
            image("img1.JPEG", 8, 6, &[], vec![label(0, 0.9, vec![]), label(1, 0.7, vec![])]),
            image(
                "img2.JPEG",
                8,
                6,
                &[cols(0, 2), cols(4, 6), cols(6, 8)],
                vec![label(0, 0.8, vec![10]), label(2, 0.6, vec![11, 12])],
            ),
            image("img3.JPEG", 8, 6, &[], vec![label(1, 0.9, vec![]), label(3, 0.4, vec![])]),
            image("img4.JPEG", 8, 6, &[cols(0, 4)], vec![label(2, 0.95, vec![10])]),
            image("img5.JPEG", 8, 6, &[cols(0, 1)], vec![label(0, 0.6, vec![10]), label(3, 0.55, vec![])]),
            image("img6.JPEG", 8, 6, &[], vec![label(1, 0.49, vec![])]),
            image("img7.JPEG", 8, 6, &[], vec![label(2, 0.9, vec![])]),
            image("img8.JPEG", 8, 6, &[], vec![label(3, 0.7, vec![])]),
        ],
    };
    let jpath = dir.path().join("produced.json");
    std::fs::write(&jpath, serde_json::to_string(&json).unwrap()).unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for (name, w) in [("img2", 8), ("img3", 8), ("img4", 8), ("img5", 10)] {
        labelscope_vision::save_png_atomic(&rgb(w, 6, 100), images.join(format!("{name}.png"))).unwrap();
    }
    // img6 has no image file.

    let cl = classes();
    let produced = load_produced(&jpath, Some(cl.len())).unwrap();
    let a = produced.sets(0.5).unwrap();
    let b = load_labels(&fixtures().join("reference.json"), None, &cl).unwrap().to_sets().unwrap();
    let r = evaluate(&a, &b, 0.5, 5);
    let out = dir.path().join("report");
    let masks = produced.json.as_ref().unwrap();
    let src = GallerySources { images_dir: Some(&images), masks: Some((&jpath, masks)) };
    let meta = vec![("labels".to_string(), jpath.display().to_string())];
    let files = write_report(&out, &r, &produced, &cl, &src, 4, 64, &meta).unwrap();
    assert_eq!(files.gallery, 4);

    let html = std::fs::read_to_string(&files.html).unwrap();
    // Overall numbers (4 decimals) and a per-class value.
    for s in ["0.6250", "0.5556", "0.5882", "0.5000", "0.3125", "0.3810", "0.8571", "0.7500"] {
        assert!(html.contains(s), "{s} missing");
    }
    for g in ["B empty", "exact match", "A \u{2283} B", "B \u{2283} A", "partial overlap"] {
        assert!(html.contains(&g.replace('>', "&gt;")), "group {g} missing");
    }
    // Gallery: the first four in the gallery order, img3 left out.
    let pos = |s: &str| html.find(&format!("data-image=\"{s}\""));
    let p: Vec<usize> = ["img4.JPEG", "img6.JPEG", "img5.JPEG", "img2.JPEG"].iter().map(|s| pos(s).unwrap()).collect();
    assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
    assert!(pos("img3.JPEG").is_none());
    assert!(html.contains("not found in"), "missing image note");
    assert!(html.contains("says 8x6; masks not drawn"), "size mismatch note");
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    assert!(html.contains("<svg"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "external resource");
    // Label lists with names: img4's reference cat is missing, its car is extra.
    assert!(html.contains(
        "<li class=\"extra\"><span class=\"sw\" style=\"background:rgb(230,25,75)\"></span>car (2) p=0.9500</li>"
    ));
    assert!(html.contains("<li class=\"missing\">cat (0)</li>"));

    // Overlay of img4: pixel (1, 2) is inside the car mask (columns 0..4,
    // not on its boundary): 100·(1−α) + colour·α per channel; column 6 untouched.
    let over = labelscope_vision::load_rgb(out.join("gallery/000-img4.png")).unwrap();
    let c = PALETTE[0];
    let want: Vec<u8> = (0..3).map(|k| (100.0 * (1.0 - MASK_ALPHA) + c[k] as f32 * MASK_ALPHA).round() as u8).collect();
    assert_eq!(over.get_pixel(1, 2).0.to_vec(), want);
    assert_eq!(over.get_pixel(6, 2).0, [100, 100, 100]);
    // img2: car = proposals 11 and 12 joined (second colour), column 5 interior... columns 4..8 in one mask.
    let over2 = labelscope_vision::load_rgb(out.join("gallery/003-img2.png")).unwrap();
    let c1 = PALETTE[1];
    let want: Vec<u8> =
        (0..3).map(|k| (100.0 * (1.0 - MASK_ALPHA) + c1[k] as f32 * MASK_ALPHA).round() as u8).collect();
    assert_eq!(over2.get_pixel(6, 2).0.to_vec(), want, "union of two proposals is one mask");
    assert!(out.join("gallery/002-img5.png").exists());

    let csv = std::fs::read_to_string(&files.csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "class,name,support,predicted,tp,fp,fn,precision,recall,f1");
    assert_eq!(lines[1], format!("0,cat,4,3,3,0,1,1,0.75,{}", 6.0f64 / 7.0));
    assert_eq!(lines[3], "2,car,0,2,0,2,0,0,,0");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files.summary).unwrap()).unwrap();
    assert_eq!(summary["disagreements"][0]["image"], "img4.JPEG");
    assert_eq!(summary["overall"]["fn"], 4);
    // No temporary files left.
    for e in std::fs::read_dir(&out).unwrap().chain(std::fs::read_dir(out.join("gallery")).unwrap()) {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with('.'), "left over: {n}");
    }
}

#[test]
fn gallery_without_images_still_lists_labels() {
    let dir = tempfile::tempdir().unwrap();
    let cl = classes();
    let produced = load_produced(&fixtures().join("produced.tsv"), Some(cl.len())).unwrap();
    let r = report(0.5);
    let files = write_report(dir.path(), &r, &produced, &cl, &GallerySources::default(), 50, 64, &[]).unwrap();
    assert_eq!(files.gallery, 5);
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert_eq!(html.matches("no image folder given").count(), 5);
    assert!(!dir.path().join("gallery").exists());
}

#[test]
fn bad_produced_files_name_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.tsv");
    std::fs::write(&p, "a.jpg\t0\t1\t0.5\nb.jpg\t0\t7\t0.5\n").unwrap();
    match load_produced(&p, Some(4)) {
        Err(Error::Format { location, message, .. }) => {
            assert_eq!(location, "line 2");
            assert!(message.contains("class index 7 outside [0, 4)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let j = dir.path().join("bad.json");
    std::fs::write(&j, "{\"images\": [\n{\"file\": 3}]}").unwrap();
    match load_produced(&j, None) {
        Err(Error::Format { location, .. }) => assert!(location.starts_with("line 2"), "{location}"),
        other => panic!("{other:?}"),
    }
    let j2 = dir.path().join("bad2.json");
    let one = JsonOutput { images: vec![image("x.jpg", 2, 2, &[], vec![label(9, 0.5, vec![])])] };
    std::fs::write(&j2, serde_json::to_string(&one).unwrap()).unwrap();
    let e = load_produced(&j2, Some(4)).unwrap_err().to_string();
    assert!(e.contains("images[0]") && e.contains("class 9 outside [0, 4)"), "{e}");
    // Two rows with the same id.
    let d = dir.path().join("dup.tsv");
    std::fs::write(&d, "a.jpg\t0\t1\t0.5\na.png\t0\t1\t0.5\n").unwrap();
    let e = load_produced(&d, None).unwrap().sets(0.5).unwrap_err().to_string();
    assert!(e.contains("appears twice"), "{e}");
}

#[test]
fn unreadable_image_is_a_note_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("img6.png"), b"not a png").unwrap();
    let cl = classes();
    let produced = load_produced(&fixtures().join("produced.tsv"), Some(cl.len())).unwrap();
    let r = report(0.5);
    let src = GallerySources { images_dir: Some(&images), masks: None };
    let out = dir.path().join("out");
    let files = write_report(&out, &r, &produced, &cl, &src, 2, 64, &[]).unwrap();
    assert_eq!(files.gallery, 2);
    let html = std::fs::read_to_string(&files.html).unwrap();
    // img4 (first) has no file, img6 (second) cannot be decoded.
    assert!(html.contains("image &quot;img4&quot; not found in"), "img4 note");
    assert!(html.contains("cannot read the image"), "img6 note");
    assert_eq!(html.matches("data:image/png;base64,").count(), 0);
}
