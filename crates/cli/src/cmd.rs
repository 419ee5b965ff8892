//! Command implementations.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use labelscope_core::analysis;
use labelscope_core::eval::{Dataset, EvalOptions, ScoreKind};
use labelscope_core::labels::{self, LabelFormat, LabelSets, LabelSource};
use labelscope_core::metrics::intervals::Bootstrap;
use labelscope_core::metrics::sets::{Activation, Thresholds};
use labelscope_core::npy::Npz;
use labelscope_core::order::{ImageOrder, BUILTIN_ORDERS};
use labelscope_core::predictions::{self, PredictionKind, PredictionOptions, Predictions};
use labelscope_core::{ClassTable, Group, ResultSet};
use rayon::prelude::*;
use serde_json::json;

use crate::args::*;
use crate::output;

/// Prediction files smaller than this are evaluated in parallel with each other.
const PARALLEL_FILE_BYTES: u64 = 64 << 20;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eval(a) => eval(*a),
        Command::CompareLabels(a) => compare_labels(a),
        Command::Cooccur(a) => cooccur(a),
        Command::Labels(c) => labels_cmd(c),
        Command::Classes(c) => classes_cmd(c),
        Command::Plot(a) => output::plot(a),
        Command::Report(a) => output::report(a),
        Command::Bench(a) => crate::bench::run(a),
        Command::Proposals(a) => crate::proposals::run(*a),
        Command::Features(a) => crate::features::run(*a),
        Command::BenchNcut(a) => crate::bench_ncut::run(a),
        Command::BenchVit(a) => crate::bench_vit::run(a),
        Command::Weights(a) => crate::weights::run(a),
        Command::BenchPreprocess(a) => crate::bench_preprocess::run(a),
        Command::Classify(a) => crate::classify::run(*a),
        Command::Gradcam(a) => crate::gradcam::run(*a),
        Command::Spurious(a) => crate::spurious::run(*a),
        Command::BenchSpurious(a) => crate::bench_spurious::run(a),
        Command::Train(a) => crate::train::run(a),
        Command::Relabel(a) => crate::relabel::run(a),
        Command::BenchRelabel(a) => crate::bench_relabel::run(a),
        Command::Byproducts(a) => crate::byproducts::run(a),
        Command::Serve(a) => crate::studio::serve(a),
        Command::Studio(a) => crate::studio::run(a),
        Command::Humans(a) => crate::humans::run(*a),
    }
}

fn class_table(a: &ClassArgs) -> Result<ClassTable> {
    Ok(match &a.classes {
        Some(p) => ClassTable::from_path(p)?,
        None => ClassTable::imagenet().clone(),
    })
}

fn load_sets(path: &Path, classes: &ClassTable) -> Result<LabelSets> {
    Ok(labels::load_labels(path, None, classes)?.to_sets()?)
}

fn file_stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn parse_threshold(s: &str) -> Result<Thresholds> {
    if s == "calibrated" {
        return Ok(Thresholds::Calibrated);
    }
    let t: f64 = s.parse().with_context(|| format!("--threshold {s:?}: expected a number or `calibrated`"))?;
    if !(0.0..=1.0).contains(&t) {
        bail!("--threshold {t}: expected a probability between 0 and 1");
    }
    Ok(Thresholds::Fixed(t))
}

fn eval(a: EvalArgs) -> Result<()> {
    let classes = class_table(&a.class_args)?;
    let format = match &a.labels_format {
        Some(f) => Some(LabelFormat::parse(f).with_context(|| format!("unknown --labels-format {f}"))?),
        None => None,
    };
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        bail!("--alpha {}: expected a number between 0 and 1 (exclusive)", a.alpha);
    }
    if a.k.is_empty() || a.k.contains(&0) {
        bail!("--k: expected positive integers such as 1,5");
    }
    let is_rater_scores = a.labels.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let mut label_source = match is_rater_scores {
        // Rater scores need the image list and original labels: built below, once the order is known.
        true => None,
        false => Some(labels::load_labels(&a.labels, format, &classes)?),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for spec in &a.predictions {
        for f in predictions::discover(spec)? {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let opts_pred = PredictionOptions {
        array: a.array.clone(),
        kind: a.prediction_kind.map(|k| match k {
            KindArg::Topk => PredictionKind::TopK,
            KindArg::Scores => PredictionKind::Scores,
        }),
    };
    let mut notes: Vec<String> = Vec::new();
    // Load the first file early: its row count (and CSV names) can define the order.
    let first = Predictions::load(&files[0], &opts_pred)?;
    let order = match &a.images {
        Some(spec) => match ImageOrder::builtin(spec) {
            Some(o) => o,
            None => {
                let p = Path::new(spec);
                if !p.exists() {
                    let names: Vec<&str> = BUILTIN_ORDERS.iter().map(|b| b.0).collect();
                    bail!("--images {spec}: no such file, and not a built-in order ({})", names.join(", "));
                }
                ImageOrder::load(p, &classes)?
            }
        },
        None => match (&first.row_names, ImageOrder::builtin_for_len(first.rows())) {
            (Some(names), _) => ImageOrder {
                names: names.clone(),
                original: None,
                source: format!("image names in {}", first.path.display()),
            },
            (None, Some((name, o))) => {
                let msg = format!(
                    "no --images given: assumed the built-in order `{name}` for {} rows ({}). \
                     The prediction files in ../shared/data are NOT in this order: pass \
                     --images ../shared/data/imagenet/val_original.json for them.",
                    first.rows(),
                    BUILTIN_ORDERS.iter().find(|b| b.0 == name).map(|b| b.2).unwrap_or("")
                );
                eprintln!("warning: {msg}");
                notes.push(msg);
                o
            }
            (None, None) => bail!(
                "{}: {} rows but no --images: pass --images with the image list whose order the rows follow \
                 (ImageNetV2 dataset json, a text file of names, or a CSV whose first column is the name)",
                first.path.display(),
                first.rows()
            ),
        },
    };
    let original = match &a.original {
        Some(p) => {
            let sets = load_sets(p, &classes)?;
            let mut o = Vec::with_capacity(order.len());
            for name in &order.names {
                let s = sets.get(name).with_context(|| {
                    format!("{}: image {name:?} of the image order has no original label", p.display())
                })?;
                if s.len() != 1 {
                    bail!(
                        "{}: image {name:?} has {} labels; --original needs exactly one per image",
                        p.display(),
                        s.len()
                    );
                }
                o.push(s[0]);
            }
            Some(o)
        }
        None => None,
    };
    let score_kind = a.scores.map(|s| match s {
        ScoresArg::Probs => ScoreKind::Probs,
        ScoresArg::Logits => ScoreKind::Logits(match a.activation {
            ActivationArg::Softmax => Activation::Softmax,
            ActivationArg::Sigmoid => Activation::Sigmoid,
        }),
    });
    let thresholds = parse_threshold(&a.threshold)?;
    let opts = EvalOptions {
        ks: a.k.clone(),
        alpha: a.alpha,
        bootstrap: (a.bootstrap > 0).then_some(Bootstrap { resamples: a.bootstrap, seed: a.seed, alpha: a.alpha }),
        bootstrap_classwise: a.bootstrap_classwise,
        score_kind,
        thresholds,
        breakdowns: !a.no_breakdowns,
        allow_partial: a.allow_partial,
    };
    let dataset_name = a.dataset.clone().unwrap_or_else(|| file_stem(&a.labels));
    let label_source = match label_source.take() {
        Some(l) => l,
        None => {
            let orig = original.as_ref().or(order.original.as_ref()).with_context(|| {
                format!(
                    "{}: rater scores need the original label of every image (for unrated images): \
                     give --images with [name, wnid] pairs or --original",
                    a.labels.display()
                )
            })?;
            let pairs: Vec<(String, u32)> = order.names.iter().cloned().zip(orig.iter().copied()).collect();
            let triples = read_rater_scores(&a.labels, &classes)?;
            notes.push(format!(
                "labels rebuilt from rater scores {}: classes scoring >= {}; unrated images keep their original label",
                a.labels.display(),
                a.rater_threshold
            ));
            LabelSource::Sets(labels::from_rater_scores(&a.labels, &triples, a.rater_threshold, &pairs)?)
        }
    };
    let ds = Dataset::prepare(&dataset_name, order, &label_source, original, &classes, &opts)?;
    notes.extend(ds.notes.iter().cloned());
    if let Some(k) = score_kind {
        notes.push(match (k, thresholds) {
            (ScoreKind::Probs, Thresholds::Fixed(t)) => {
                format!("set metrics: scores used as probabilities, threshold {t}")
            }
            (ScoreKind::Probs, Thresholds::Calibrated) => {
                "set metrics: scores used as probabilities, per-class calibrated thresholds".into()
            }
            (ScoreKind::Logits(act), Thresholds::Fixed(t)) => {
                format!("set metrics: {act:?} of logits, threshold {t}").to_lowercase()
            }
            (ScoreKind::Logits(act), Thresholds::Calibrated) => {
                format!("set metrics: {act:?} of logits, per-class calibrated thresholds").to_lowercase()
            }
        });
    }

    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} evaluating [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // One prediction file: load (the first one is already loaded), check CSV row names, evaluate.
    let first = std::sync::Mutex::new(Some(first));
    let one = |f: &PathBuf| -> Result<(String, labelscope_core::eval::Evaluation)> {
        let preloaded =
            first.lock().ok().and_then(|mut g| if g.as_ref().is_some_and(|p| &p.path == f) { g.take() } else { None });
        let preds = match preloaded {
            Some(p) => p,
            None => Predictions::load(f, &opts_pred)?,
        };
        if let (Some(names), Some(_)) = (&preds.row_names, &a.images) {
            let differ = names
                .iter()
                .zip(&ds.order.names)
                .position(|(x, y)| labelscope_core::ids::join_key(x) != labelscope_core::ids::join_key(y));
            if let Some(r) = differ {
                bail!(
                    "{}: row {} is image {:?} but --images says {:?}",
                    f.display(),
                    r + 1,
                    names[r],
                    ds.order.names[r]
                );
            }
        }
        let ev = ds.evaluate(&preds, &opts).with_context(|| format!("evaluating {}", f.display()))?;
        bar.set_message(preds.model.clone());
        bar.inc(1);
        Ok((preds.model, ev))
    };
    // Small files (top-k predictions) are evaluated in parallel; large score matrices one
    // at a time, since each evaluation is parallel inside and memory grows with each file.
    let small = files.iter().all(|f| std::fs::metadata(f).map(|m| m.len() < PARALLEL_FILE_BYTES).unwrap_or(false));
    let evaluations: Vec<Result<_>> =
        if small { files.par_iter().map(one).collect() } else { files.iter().map(one).collect() };
    let mut results = ResultSet::default();
    for ev in evaluations {
        let (model, ev) = ev?;
        notes.extend(ev.notes.into_iter().map(|n| format!("{model}: {n}")));
        results.rows.extend(ev.rows);
    }
    bar.finish_and_clear();
    if a.sort != "file" {
        rank_models(&mut results, &a.sort);
    }
    results.notes = notes;
    let meta = vec![
        ("labels".to_string(), a.labels.display().to_string()),
        ("label format".to_string(), label_source.format().name().to_string()),
        ("image order".to_string(), ds.order.source.clone()),
        ("prediction files".to_string(), files.len().to_string()),
    ];
    output::emit_eval(&a, &results, &meta)
}

/// Reorders rows so that models come best first by `metric` (subset `all`);
/// models without that metric keep their order after the others. Rows of one
/// model keep their relative order.
fn rank_models(results: &mut ResultSet, metric: &str) {
    let models: Vec<String> = results.models().into_iter().map(str::to_string).collect();
    let score = |m: &str| {
        results.rows.iter().find(|r| r.model == m && r.metric == metric && r.subset == "all").map(|r| r.value)
    };
    let mut ranked: Vec<(usize, Option<f64>)> = models.iter().enumerate().map(|(i, m)| (i, score(m))).collect();
    ranked.sort_by(|x, y| match (x.1, y.1) {
        (Some(a), Some(b)) => b.total_cmp(&a).then(x.0.cmp(&y.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => x.0.cmp(&y.0),
    });
    let rank: std::collections::HashMap<&str, usize> =
        ranked.iter().enumerate().map(|(pos, (i, _))| (models[*i].as_str(), pos)).collect();
    let mut rows = std::mem::take(&mut results.rows);
    rows.sort_by_key(|r| rank[r.model.as_str()]);
    results.rows = rows;
}

fn compare_labels(a: CompareArgs) -> Result<()> {
    let classes = class_table(&a.class_args)?;
    let la = load_sets(&a.a, &classes)?;
    let lb = load_sets(&a.b, &classes)?;
    let c = analysis::compare(&la, &lb, a.top);
    if c.compared == 0 {
        bail!("{} and {} share no image id", a.a.display(), a.b.display());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    println!("A = {}\nB = {}", a.a.display(), a.b.display());
    println!("{} images compared ({} only in A, {} only in B)\n", c.compared, c.only_a, c.only_b);
    println!("{:<18} {:>8} {:>8}  most involved classes", "group", "images", "share");
    for g in &c.groups {
        let top: Vec<String> = g
            .top_classes
            .iter()
            .map(|(cl, n)| format!("{} ({n})", classes.get(*cl as usize).map(|x| x.name()).unwrap_or("?")))
            .collect();
        println!("{:<18} {:>8} {:>7.2}%  {}", g.name, g.count, 100.0 * g.share, top.join(", "));
    }
    println!("\n{} of the partial-overlap images share no class at all", c.disjoint);
    Ok(())
}

fn cooccur(a: CooccurArgs) -> Result<()> {
    let classes = class_table(&a.class_args)?;
    let l = load_sets(&a.labels, &classes)?;
    let mut rows = analysis::cooccurrence(&l.sets, a.min_count);
    if a.top > 0 {
        rows.truncate(a.top);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "rows": rows }))?);
        return Ok(());
    }
    let name = |c: u32| classes.get(c as usize).map(|x| x.name().to_string()).unwrap_or_default();
    println!("{:>6} {:>6} {:>6}  {:>8} {:>8}  pair (A + B)", "count", "freqA", "freqB", "P(A|B)", "P(B|A)");
    for r in &rows {
        println!(
            "{:>6} {:>6} {:>6}  {:>8.3} {:>8.3}  {} ({}) + {} ({})",
            r.count,
            r.freq_a,
            r.freq_b,
            r.conf_a_given_b,
            r.conf_b_given_a,
            name(r.a),
            r.a,
            name(r.b),
            r.b
        );
    }
    Ok(())
}

fn labels_cmd(c: LabelsCommand) -> Result<()> {
    match c {
        LabelsCommand::Rebuild { scores, original, threshold, output } => {
            let classes = ClassTable::imagenet();
            let orig = load_sets(&original, classes)?;
            let mut orig_pairs = Vec::with_capacity(orig.len());
            for (n, s) in orig.names.iter().zip(&orig.sets) {
                if s.len() != 1 {
                    bail!(
                        "{}: image {n:?} has {} labels; expected exactly one original label",
                        original.display(),
                        s.len()
                    );
                }
                orig_pairs.push((n.clone(), s[0]));
            }
            let triples = read_rater_scores(&scores, classes)?;
            let rebuilt = labels::from_rater_scores(&scores, &triples, threshold, &orig_pairs)?.sorted_by_name()?;
            labelscope_core::atomic::write_atomic(&output, rebuilt.to_json().as_bytes())?;
            let rated: std::collections::HashSet<&str> = triples.iter().map(|t| t.0.as_str()).collect();
            eprintln!(
                "wrote {}: {} images ({} rated, {} with an empty set)",
                output.display(),
                rebuilt.len(),
                rated.len(),
                rebuilt.empty_count()
            );
            Ok(())
        }
        LabelsCommand::Info { labels: path, class_args } => {
            let classes = class_table(&class_args)?;
            let src = labels::load_labels(&path, None, &classes)?;
            let sets = src.to_sets()?;
            let mut hist = [0usize; 5];
            for s in &sets.sets {
                hist[s.len().min(4)] += 1;
            }
            println!("{}: format {}, {} images", path.display(), src.format().name(), sets.len());
            println!("  empty sets: {}", hist[0]);
            for (i, h) in hist.iter().enumerate().skip(1) {
                println!("  {}{} label{}: {h}", if i == 4 { ">=" } else { "" }, i, if i == 1 { "" } else { "s" });
            }
            if let LabelSource::Expert(e) = &src {
                println!("  problematic: {}", e.problematic.iter().filter(|&&p| p).count());
                println!("  ImageNet-M: {}", e.imagenet_m.iter().filter(|&&p| p).count());
            }
            Ok(())
        }
    }
}

/// Reads ReaL rater scores: `tensor` (scores) and `info` ((file name, class index) pairs).
pub fn read_rater_scores(path: &Path, classes: &ClassTable) -> Result<Vec<(String, u32, f64)>> {
    let mut npz = Npz::open(path)?;
    let scores = npz.read("tensor")?.to_f64_vec(path, "array \"tensor\"")?;
    let info_arr = npz.read("info")?;
    let shape = info_arr.shape().to_vec();
    let info = info_arr.to_strings()?;
    if shape.len() != 2 || shape[1] != 2 || shape[0] != scores.len() {
        bail!(
            "{}: array \"info\" has shape {:?}; expected [{}, 2] (file name, class index) matching \"tensor\"",
            path.display(),
            shape,
            scores.len()
        );
    }
    let mut out = Vec::with_capacity(scores.len());
    for (i, s) in scores.iter().enumerate() {
        let name = &info[2 * i];
        let cls = &info[2 * i + 1];
        let c = classes.resolve(cls).with_context(|| {
            format!("{}: array \"info\" row {i}: {cls:?} is not a class index 0..{}", path.display(), classes.len() - 1)
        })?;
        out.push((name.clone(), c as u32, *s));
    }
    Ok(out)
}

fn classes_cmd(c: ClassesCommand) -> Result<()> {
    let t = ClassTable::imagenet();
    match c {
        ClassesCommand::List { group, json } => {
            let g = match &group {
                Some(g) => Some(Group::parse(g).with_context(|| {
                    let names: Vec<&str> = Group::ALL.iter().map(|g| g.name()).collect();
                    format!("unknown group {g:?}; expected one of {}", names.join(", "))
                })?),
                None => None,
            };
            let list: Vec<_> = t.classes().iter().filter(|c| g.is_none_or(|g| t.in_group(c.index, g))).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for c in list {
                    let groups: Vec<&str> = c.groups.iter().map(|g| g.name()).collect();
                    println!("{:>4}  {}  {:<30}  {}", c.index, c.wnid, c.name(), groups.join(","));
                }
            }
        }
        ClassesCommand::Groups => {
            for g in Group::ALL {
                let m = t.members(g);
                println!(
                    "{:<22} {:>4} classes  (indices {}..{})",
                    g.name(),
                    m.len(),
                    m.first().copied().unwrap_or(0),
                    m.last().copied().unwrap_or(0)
                );
            }
        }
        ClassesCommand::Generate { class_info, wordnet, output } => {
            let wn = labelscope_core::wordnet::NounHypernyms::from_dir(&wordnet)?;
            let text = labelscope_core::wordnet::generate_table_json(&class_info, &wn)?;
            labelscope_core::atomic::write_atomic(&output, text.as_bytes())?;
            eprintln!("wrote {}", output.display());
        }
    }
    Ok(())
}
