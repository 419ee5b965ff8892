//! `labelscope train dfr` on planted data: two classes, a core feature that
//! predicts the class with noise, and a spurious feature that predicts it
//! almost perfectly on 90 % of the training images (the majority group) and
//! points the other way on the rest. A last layer trained on all images leans
//! on the spurious feature and fails the minority group; DFR on the subset
//! balanced by the spurious agreement score must not.

use std::path::Path;
use std::process::Command;

use labelscope_core::rng::Xoshiro256;

fn write_npy(p: &Path, rows: &[[f32; 4]]) {
    let mut b = labelscope_core::npy::header_bytes("<f4", &[rows.len(), 4]);
    for r in rows {
        for v in r {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(p, b).unwrap();
}

/// Writes features, images, labels, scores and groups of `n` images; `minority` share of them
/// have the spurious feature flipped.
fn split(dir: &Path, tag: &str, n: usize, minority: f64, seed: u64) {
    let mut rng = Xoshiro256::from_seed(seed);
    let (mut rows, mut images, mut labels, mut scores, mut groups) = (
        Vec::new(),
        String::new(),
        String::from("image,class\n"),
        String::from("image,agree\n"),
        String::from("image,group\n"),
    );
    for i in 0..n {
        let y = i % 2;
        let sign = if y == 1 { 1.0 } else { -1.0 };
        let flipped = rng.unit() < minority;
        let core = sign + 0.9 * rng.gauss();
        let spur = if flipped { -sign } else { sign } + 0.1 * rng.gauss();
        rows.push([core as f32, spur as f32, rng.gauss() as f32, rng.gauss() as f32]);
        let name = format!("{tag}{i}.png");
        images.push_str(&format!("{name}\n"));
        labels.push_str(&format!("{name},{}\n", if y == 1 { "b" } else { "a" }));
        scores.push_str(&format!("{name},{}\n", spur * sign));
        groups.push_str(&format!("{name},{}\n", if flipped { "minority" } else { "majority" }));
    }
    write_npy(&dir.join(format!("{tag}.npy")), &rows);
    std::fs::write(dir.join(format!("{tag}.txt")), images).unwrap();
    std::fs::write(dir.join(format!("{tag}_labels.csv")), labels).unwrap();
    std::fs::write(dir.join(format!("{tag}_scores.csv")), scores).unwrap();
    std::fs::write(dir.join(format!("{tag}_groups.csv")), groups).unwrap();
}

/// The arguments of a DFR run on the training split into `out`.
fn args(dir: &Path, per_class: usize, out: &str, column: &str, extra: &[&str]) -> Vec<String> {
    let p = |s: &str| dir.join(s).display().to_string();
    let mut v: Vec<String> = vec!["train".into(), "dfr".into()];
    for (flag, value) in [
        ("--features", p("train.npy")),
        ("--images", p("train.txt")),
        ("--labels", p("train_labels.csv")),
        ("--scores", p("train_scores.csv")),
        ("--score-column", column.to_string()),
        ("--per-class", per_class.to_string()),
        ("--classes", p("classes.txt")),
        ("--epochs", "60".into()),
        ("--lr", "0.05".into()),
        ("--batch", "64".into()),
        ("--out", p(out)),
    ] {
        v.push(flag.into());
        v.push(value);
    }
    v.push("-q".into());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_labelscope")).args(args).output().unwrap()
}

/// A run with the evaluation on the eval split; its dfr.json.
fn dfr(dir: &Path, per_class: usize, out: &str, extra: &[&str]) -> serde_json::Value {
    let p = |s: &str| dir.join(s).display().to_string();
    let (f, i, l, g) = (p("eval.npy"), p("eval.txt"), p("eval_labels.csv"), p("eval_groups.csv"));
    let mut e: Vec<&str> = vec!["--eval-features", &f, "--eval-images", &i, "--eval-labels", &l, "--eval-groups", &g];
    e.extend_from_slice(extra);
    let o = run(&args(dir, per_class, out, "agree", &e));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(dir.join(out).join("dfr.json")).unwrap()).unwrap()
}

#[test]
fn dfr_fixes_the_minority_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("classes.txt"), "a\nb\n").unwrap();
    split(d, "train", 1200, 0.05, 1);
    split(d, "eval", 400, 0.5, 2);
    // All images (a per-class count above the class sizes): the spurious feature wins.
    let all = dfr(d, 10_000, "all", &[]);
    assert_eq!(all["subset"], 1200);
    let all_worst = all["eval"]["worst_group"]["accuracy"].as_f64().unwrap();
    assert_eq!(all["eval"]["worst_group"]["group"], "minority");
    // Balanced: the 60 most and 60 least spurious-agreeing images of each class.
    let bal = dfr(d, 60, "dfr", &[]);
    assert_eq!(bal["subset"], 240);
    assert_eq!(bal["subset_per_class"]["a"]["chosen"], 120);
    let bal_worst = bal["eval"]["worst_group"]["accuracy"].as_f64().unwrap();
    eprintln!("worst-group accuracy: all images {all_worst:.3}, DFR {bal_worst:.3}");
    assert!(all_worst < 0.6, "{all}");
    assert!(bal_worst > 0.7 && bal_worst > all_worst + 0.2, "{bal}");
    // Outputs: the layer, a metrics line per epoch, the loss plot.
    let log = std::fs::read_to_string(d.join("dfr/metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 60);
    assert!(std::fs::read_to_string(d.join("dfr/loss.svg")).unwrap().contains("<svg"));
    assert!(d.join("dfr/head.safetensors").exists());
    // A finished run in the folder is not silently overwritten; --resume continues it (nothing left to do).
    assert!(!run(&args(d, 60, "dfr", "agree", &[])).status.success(), "a second run needs --resume");
    let again = dfr(d, 60, "dfr", &["--resume"]);
    assert_eq!(again["steps"], bal["steps"]);
    // Bad input: a score column that does not exist.
    let o = run(&args(d, 60, "x", "nope", &[]));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("no column \"nope\"") && e.contains("agree"), "{e}");
}
