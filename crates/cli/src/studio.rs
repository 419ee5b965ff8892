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
    /// CSV, one row per event (hover, trace sample, click).
    EventsCsv,
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
        /// Output file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Judge every assignment of a project by the HIT rules; CSV to standard output or a file.
    Qc {
        #[command(flatten)]
        db: DbArgs,
        /// Project name.
        #[arg(long)]
        project: String,
        /// Reject below this recall on known-positive images.
        #[arg(long, default_value_t = 0.333)]
        min_known_recall: f64,
        /// Reject below this many selections per candidate shown (30 of 480).
        #[arg(long, default_value_t = 0.0625)]
        min_selection_rate: f64,
        /// Reject below this fraction of the HIT's pages completed (9 of 10).
        #[arg(long, default_value_t = 0.9)]
        min_pages_fraction: f64,
        /// Output file (written atomically).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List the projects.
    List(DbArgs),
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
        let router =
            server::router(db.clone(), key.clone(), &ServerConfig { images: a.images.clone(), max_body: a.max_body })?;
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
            StudioCommand::Export { db, project, format, output } => {
                let d = open(&db).await?;
                let n = match format {
                    ExportFormat::ImagenetAb => labelscope_studio::export::imagenet_ab(&d, &project, &output).await?,
                    ExportFormat::RecordsCsv => labelscope_studio::export::csv_records(&d, &project, &output).await?,
                    ExportFormat::EventsCsv => labelscope_studio::export::csv_events(&d, &project, &output).await?,
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
            StudioCommand::Qc { db, project, min_known_recall, min_selection_rate, min_pages_fraction, output } => {
                let d = open(&db).await?;
                let rules = labelscope_studio::qc::QcRules { min_known_recall, min_selection_rate, min_pages_fraction };
                let verdicts = labelscope_studio::qc::project_verdicts(&d, &project, &rules).await?;
                let mut csv = String::from(
                    "assignment,hit,worker,pages,hit_pages,selected,shown,known_selected,known_shown,accepted,reasons\n",
                );
                for v in &verdicts {
                    csv.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{},{},\"{}\"\n",
                        v.assignment,
                        v.hit,
                        v.worker,
                        v.pages.0,
                        v.pages.1,
                        v.selections.0,
                        v.selections.1,
                        v.known.0,
                        v.known.1,
                        u8::from(v.accepted),
                        v.reasons.join("; ").replace('"', "'")
                    ));
                }
                match output {
                    Some(p) => labelscope_core::atomic::write_atomic(&p, csv.as_bytes())?,
                    None => print!("{csv}"),
                }
                let rejected = verdicts.iter().filter(|v| !v.accepted).count();
                eprintln!("{} assignments: {} accepted, {rejected} rejected", verdicts.len(), verdicts.len() - rejected);
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
