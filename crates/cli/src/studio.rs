//! `labelscope serve` and `labelscope studio`: the annotation studio.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use labelscope_studio::db::Db;
use labelscope_studio::manifest::Manifest;
use labelscope_studio::secret::WorkerKey;
use labelscope_studio::server::{self, ServerConfig};

/// Where the database is and where its worker-id key lives.
#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Database: a SQLite file (created if missing) or a `postgres://` URL.
    #[arg(long, default_value = "studio.sqlite")]
    pub db: String,
    /// Key of the worker-id hash (created, mode 0600, if missing). Default: next to a SQLite
    /// database (`<db>.key`), else `studio.key`.
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl DbArgs {
    fn key_path(&self) -> PathBuf {
        self.key.clone().unwrap_or_else(|| {
            if self.db.starts_with("postgres://") || self.db.starts_with("postgresql://") {
                PathBuf::from("studio.key")
            } else {
                PathBuf::from(format!("{}.key", self.db.trim_start_matches("sqlite://")))
            }
        })
    }
}

/// `labelscope serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Folder the projects' image paths are relative to.
    #[arg(long)]
    pub images: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body: usize,
    /// Create a project from this manifest before serving (skipped if the project exists).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Write the HIT links of `--manifest`'s project to this file (one per line).
    #[arg(long, requires = "manifest")]
    pub links: Option<PathBuf>,
    /// Region task: feature cache (`labelscope relabel` features) of the project's images; with
    /// `--region-head`, suggestions for a drawn box come from the relabel region query.
    #[arg(long, value_name = "DIR", requires = "region_head")]
    pub region_cache: Option<PathBuf>,
    /// Region task: the region labeler head (safetensors) applied to the pooled box features.
    #[arg(long, value_name = "FILE", requires = "region_cache")]
    pub region_head: Option<PathBuf>,
    /// Device of the region head (`cpu`, `cuda`, `cuda:N`).
    #[arg(long, default_value = "cpu")]
    pub region_device: String,
    #[command(flatten)]
    pub class_args: crate::args::ClassArgs,
}

/// `labelscope studio`.
#[derive(Debug, Args)]
pub struct StudioArgs {
    #[command(subcommand)]
    pub command: StudioCommand,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// ImageNet-AB `.tar.gz` (one XML per image; read by `labelscope byproducts`).
    ImagenetAb,
    /// CSV, one row per (image, showing).
    RecordsCsv,
    /// CSV, one row per event (hover, trace sample, click, icon action, tab, answer, box drawing).
    EventsCsv,
    /// COCO-AB JSON array (tag projects; read by `labelscope byproducts`).
    CocoAb,
    /// JSON lines, one stored record per line (any task; full fidelity).
    RecordsJsonl,
    /// Label projects: a folder with one answers file per labeler (`{worker hash}.csv`:
    /// `image,label,alternative,time`), read by `labelscope humans`.
    AnswersCsv,
}

/// Release layouts `studio import` reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportFormatArg {
    /// ImageNet-AB `.tar.gz` (becomes a browse project).
    ImagenetAb,
    /// COCO-AB JSON array (becomes a tag project).
    CocoAb,
}

/// Vote aggregation methods.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AggregateMethod {
    /// Share of yes answers.
    Majority,
    /// Dawid–Skene posterior (per-worker confusion).
    DawidSkene,
}

/// The studio's administration commands.
#[derive(Debug, Subcommand)]
pub enum StudioCommand {
    /// Create the database schema or bring it up to date.
    Migrate(DbArgs),
    /// Create a project from a manifest and print one link per HIT.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// The project manifest (JSON; see the README).
        #[arg(long)]
        manifest: PathBuf,
        /// Folder the manifest's image paths are relative to (every file is checked).
        #[arg(long)]
        images: PathBuf,
        /// Base URL of the server, for the printed links.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
        /// Write the links to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Export a project's byproducts.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// Project name.
        #[arg(long)]
        project: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "imagenet-ab")]
        format: ExportFormat,
        /// Output file (written atomically); for `answers-csv` a folder (created if missing) whose
        /// files are each written atomically (other answer files already there are an error).
        #[arg(short, long)]
        output: PathBuf,
        /// `answers-csv`: write ImageNet class indices (0-999) instead of class keys (WordNet ids).
        #[arg(long)]
        class_indices: bool,
        /// `answers-csv`: leave out the assignments that quality control (`studio qc` with the
        /// task's default rules) rejects.
        #[arg(long)]
        accepted_only: bool,
    },
    /// Judge every assignment of a project by the HIT rules; CSV to standard output or a file.
    Qc {
        #[command(flatten)]
        db: DbArgs,
        /// Project name.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        rules: RuleArgs,
        /// Output file (written atomically).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Aggregate a verify project's answers into label probabilities and label sets.
    Aggregate {
        #[command(flatten)]
        db: DbArgs,
        /// Project name.
        #[arg(long)]
        project: String,
        /// How answers become probabilities.
        #[arg(long, value_enum, default_value = "dawid-skene")]
        method: AggregateMethod,
        /// Keep a label at this probability or above (ImageNet-ReaL: 0.8).
        #[arg(long, default_value_t = 0.8)]
        threshold: f64,
        /// Majority: leave "maybe" answers out instead of counting them as half a yes.
        #[arg(long)]
        ignore_maybe: bool,
        /// Count every assignment, also those the quality-control rules reject.
        #[arg(long)]
        all_assignments: bool,
        #[command(flatten)]
        rules: RuleArgs,
        /// Write label sets by class key (`{image: ["n02085620", ...]}`) instead of ImageNet class
        /// indices (`{image: [151, ...]}`, read by `labelscope eval --labels`).
        #[arg(long)]
        by_key: bool,
        /// Label sets (JSON, written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Also write every (image, label) with its votes and probability as CSV.
        #[arg(long, value_name = "FILE")]
        items: Option<PathBuf>,
    },
    /// Import an ImageNet-AB or COCO-AB release as a new project (browse or tag).
    Import {
        #[command(flatten)]
        db: DbArgs,
        /// Name of the new project.
        #[arg(long)]
        project: String,
        /// Layout of the release.
        #[arg(long, value_enum)]
        format: ImportFormatArg,
        /// The release: an ImageNet-AB `.tar.gz` or a COCO-AB JSON array.
        release: PathBuf,
        /// Parser threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Skip malformed records (counted) instead of stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
    /// List the projects.
    List(DbArgs),
}

/// The quality-control thresholds (defaults: the task's published rules).
#[derive(Debug, Args, Clone)]
pub struct RuleArgs {
    /// Reject below this recall on known-positive images (browse).
    #[arg(long, default_value_t = 0.333)]
    min_known_recall: f64,
    /// Reject below this many selections per candidate shown (browse; 30 of 480).
    #[arg(long, default_value_t = 0.0625)]
    min_selection_rate: f64,
    /// Reject below this fraction of the HIT's pages completed [default: 0.9; tag 0.8 = 16 of 20].
    #[arg(long)]
    min_pages_fraction: Option<f64>,
    /// Reject below this accuracy on gold (attention-check) answers.
    #[arg(long, default_value_t = 0.75)]
    min_gold_accuracy: f64,
    /// Reject below this accuracy against known objects (tag icon localisation, region boxes).
    #[arg(long, default_value_t = 0.75)]
    min_object_accuracy: f64,
}

impl RuleArgs {
    async fn rules(&self, db: &Db, project: &str) -> Result<labelscope_studio::qc::QcRules> {
        let (_, task) = labelscope_studio::qc::project_task(db, project).await?;
        let base = labelscope_studio::qc::QcRules::for_task(task);
        Ok(labelscope_studio::qc::QcRules {
            min_known_recall: self.min_known_recall,
            min_selection_rate: self.min_selection_rate,
            min_pages_fraction: self.min_pages_fraction.unwrap_or(base.min_pages_fraction),
            min_gold_accuracy: self.min_gold_accuracy,
            min_object_accuracy: self.min_object_accuracy,
        })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

async fn open(db: &DbArgs) -> Result<Db> {
    let d = Db::open(&db.db).await.with_context(|| format!("cannot open database {}", db.db))?;
    d.migrate().await.with_context(|| format!("database {}", db.db))?;
    Ok(d)
}

async fn create(db: &Db, manifest: &Path, images: &Path) -> Result<(String, Vec<String>)> {
    let m = Manifest::from_path(manifest)?;
    labelscope_studio::project::check_files(&m, images, manifest)?;
    let created = labelscope_studio::project::create(db, &m).await?;
    Ok((m.name, created.tokens))
}

fn links(base: &str, tokens: &[String]) -> String {
    tokens.iter().map(|t| format!("{}/hit/{t}\n", base.trim_end_matches('/'))).collect()
}

/// Runs `labelscope serve`.
pub fn serve(a: ServeArgs) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let db = open(&a.db).await?;
        let key = WorkerKey::load_or_create(&a.db.key_path())?;
        if let Some(m) = &a.manifest {
            let name = Manifest::from_path(m)?.name;
            if db.project_by_name(&name).await?.is_none() {
                let (_, tokens) = create(&db, m, &a.images).await?;
                let text = links(&format!("http://{}", a.addr), &tokens);
                match &a.links {
                    Some(p) => labelscope_core::atomic::write_atomic(p, text.as_bytes())?,
                    None => print!("{text}"),
                }
                eprintln!("project {name:?}: {} HITs", tokens.len());
            } else {
                eprintln!("project {name:?} exists; not created again");
            }
        }
        let suggester: Option<std::sync::Arc<dyn server::RegionSuggester>> = match (&a.region_cache, &a.region_head) {
            (Some(cache), Some(head)) => {
                let classes = match &a.class_args.classes {
                    Some(p) => labelscope_core::classes::ClassTable::from_path(p)?,
                    None => labelscope_core::classes::ClassTable::imagenet().clone(),
                };
                let s = crate::studio_region::CacheSuggester::open(cache, head, &a.region_device, classes)?;
                eprintln!("region suggestions from {} with {}", cache.display(), head.display());
                Some(std::sync::Arc::new(s))
            }
            _ => None,
        };
        let config = ServerConfig { images: a.images.clone(), max_body: a.max_body, suggester };
        let router = server::router(db.clone(), key.clone(), &config)?;
        let admin = server::admin_key(&key);
        server::serve(router, a.addr, |bound| {
            eprintln!("labelscope studio listening on http://{bound}");
            eprintln!("worker statistics: http://{bound}/admin/workers?key={admin}");
        })
        .await?;
        db.close().await;
        Ok(())
    })
}

/// Runs `labelscope studio ...`.
pub fn run(a: StudioArgs) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        match a.command {
            StudioCommand::Migrate(d) => {
                let db = Db::open(&d.db).await.with_context(|| format!("cannot open database {}", d.db))?;
                let applied = db.migrate().await?;
                eprintln!("schema version {} ({} migration(s) applied)", db.schema_version().await?, applied.len());
            }
            StudioCommand::Create { db, manifest, images, base_url, output } => {
                let d = open(&db).await?;
                let (name, tokens) = create(&d, &manifest, &images).await?;
                let text = links(&base_url, &tokens);
                match output {
                    Some(p) => labelscope_core::atomic::write_atomic(&p, text.as_bytes())?,
                    None => print!("{text}"),
                }
                eprintln!("project {name:?}: {} HITs", tokens.len());
            }
            StudioCommand::Export { db, project, format, output, class_indices, accepted_only } => {
                let d = open(&db).await?;
                if (class_indices || accepted_only) && !matches!(format, ExportFormat::AnswersCsv) {
                    bail!("--class-indices and --accepted-only apply to --format answers-csv only");
                }
                if let ExportFormat::AnswersCsv = format {
                    use labelscope_studio::export::{answers_csv, AnswerClasses};
                    let mut exclude = std::collections::HashSet::new();
                    if accepted_only {
                        for v in labelscope_studio::qc::project_verdicts(&d, &project, None).await? {
                            if !v.accepted {
                                exclude.insert(v.assignment);
                            }
                        }
                    }
                    let classes = if class_indices { AnswerClasses::Indices } else { AnswerClasses::Keys };
                    let w = answers_csv(&d, &project, &output, classes, &exclude).await?;
                    if w.rows == 0 {
                        bail!("project {project:?} has no submitted answers yet; nothing exported");
                    }
                    eprintln!(
                        "{} answers of {} labelers written to {} ({} rejected assignments left out)",
                        w.rows,
                        w.files.len(),
                        output.display(),
                        exclude.len()
                    );
                    return Ok(());
                }
                let n = match format {
                    ExportFormat::ImagenetAb => labelscope_studio::export::imagenet_ab(&d, &project, &output).await?,
                    ExportFormat::RecordsCsv => labelscope_studio::export::csv_records(&d, &project, &output).await?,
                    ExportFormat::EventsCsv => labelscope_studio::export::csv_events(&d, &project, &output).await?,
                    ExportFormat::CocoAb => labelscope_studio::export::coco_ab(&d, &project, &output).await?,
                    ExportFormat::RecordsJsonl => {
                        labelscope_studio::export::jsonl_records(&d, &project, &output).await?
                    }
                    ExportFormat::AnswersCsv => unreachable!("handled above"),
                };
                if n == 0 {
                    bail!("project {project:?} has no submitted records yet; nothing exported");
                }
                eprintln!(
                    "{n} {} written to {}",
                    if matches!(format, ExportFormat::ImagenetAb) { "images" } else { "rows" },
                    output.display()
                );
            }
            StudioCommand::Qc { db, project, rules, output } => {
                let d = open(&db).await?;
                let rules = rules.rules(&d, &project).await?;
                let verdicts = labelscope_studio::qc::project_verdicts(&d, &project, Some(&rules)).await?;
                let mut csv = String::from(
                    "assignment,hit,worker,pages,hit_pages,selected,shown,known_selected,known_shown,gold_right,\
                     gold_asked,objects_right,objects_checked,accepted,reasons\n",
                );
                for v in &verdicts {
                    csv.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"\n",
                        v.assignment,
                        v.hit,
                        v.worker,
                        v.pages.0,
                        v.pages.1,
                        v.selections.0,
                        v.selections.1,
                        v.known.0,
                        v.known.1,
                        v.gold.0,
                        v.gold.1,
                        v.objects.0,
                        v.objects.1,
                        u8::from(v.accepted),
                        v.reasons.join("; ").replace('"', "'")
                    ));
                }
                match output {
                    Some(p) => labelscope_core::atomic::write_atomic(&p, csv.as_bytes())?,
                    None => print!("{csv}"),
                }
                let rejected = verdicts.iter().filter(|v| !v.accepted).count();
                eprintln!(
                    "{} assignments: {} accepted, {rejected} rejected",
                    verdicts.len(),
                    verdicts.len() - rejected
                );
            }
            StudioCommand::Aggregate {
                db,
                project,
                method,
                threshold,
                ignore_maybe,
                all_assignments,
                rules,
                by_key,
                output,
                items,
            } => {
                use labelscope_studio::aggregate::{aggregate, items_csv, Method};
                let d = open(&db).await?;
                let mut exclude = std::collections::HashSet::new();
                if !all_assignments {
                    let rules = rules.rules(&d, &project).await?;
                    for v in labelscope_studio::qc::project_verdicts(&d, &project, Some(&rules)).await? {
                        if !v.accepted {
                            exclude.insert(v.assignment);
                        }
                    }
                }
                let m = match method {
                    AggregateMethod::Majority => Method::Majority(if ignore_maybe {
                        labelscope_core::votes::MaybePolicy::Ignore
                    } else {
                        labelscope_core::votes::MaybePolicy::Half
                    }),
                    AggregateMethod::DawidSkene => Method::DawidSkene(Default::default()),
                };
                let agg = aggregate(&d, &project, m, threshold, &exclude).await?;
                let text = if by_key { agg.sets_by_key_json() } else { agg.label_sets(&output)?.to_json() };
                labelscope_core::atomic::write_atomic(&output, text.as_bytes())?;
                if let Some(p) = &items {
                    labelscope_core::atomic::write_atomic(p, items_csv(&agg).as_bytes())?;
                }
                let kept = agg.items.iter().filter(|i| i.kept).count();
                let empty = agg.sets.iter().filter(|(_, l)| l.is_empty()).count();
                eprintln!(
                    "{} images, {} labels proposed, {kept} kept at {threshold} ({empty} images with no label); \
                     {} votes of {} workers ({} rejected assignments left out){}",
                    agg.sets.len(),
                    agg.items.len(),
                    agg.votes,
                    agg.workers,
                    exclude.len(),
                    match agg.em {
                        Some((it, conv)) => format!(
                            "; Dawid–Skene {it} iterations, {}",
                            if conv { "converged" } else { "not converged" }
                        ),
                        None => String::new(),
                    }
                );
                eprintln!("label sets written to {}", output.display());
            }
            StudioCommand::Import { db, project, format, release, threads, skip_bad } => {
                use labelscope_studio::import::{import, ImportFormat};
                let d = open(&db).await?;
                let key = WorkerKey::load_or_create(&db.key_path())?;
                let f = match format {
                    ImportFormatArg::ImagenetAb => ImportFormat::ImagenetAb,
                    ImportFormatArg::CocoAb => ImportFormat::CocoAb,
                };
                let started = std::time::Instant::now();
                let s = import(&d, &key, &project, f, &release, threads, skip_bad).await?;
                eprintln!(
                    "project {project:?}: {} images, {} HITs, {} assignments, {} pages, {} records imported from {} in \
                     {:.1} s{}",
                    s.images,
                    s.hits,
                    s.assignments,
                    s.pages,
                    s.records,
                    release.display(),
                    started.elapsed().as_secs_f64(),
                    if s.skipped > 0 { format!(" ({} malformed records skipped)", s.skipped) } else { String::new() }
                );
            }
            StudioCommand::List(d) => {
                let db = open(&d).await?;
                for (_, name, task, hits) in db.projects().await? {
                    println!("{name}\t{task}\t{hits} HITs");
                }
            }
        }
        Ok(())
    })
}
