//! Storage: one schema for SQLite (the embedded default, in WAL mode) and
//! PostgreSQL, reached through sqlx's `Any` driver, with our own migration
//! runner (each migration is written once, with `{id}` standing for the
//! backend's auto-increment primary key).
//!
//! Every write that acknowledges user work (a submitted page with its
//! per-image records) happens in one transaction, and SQLite runs with
//! `synchronous=FULL`, so an acknowledged page survives a killed server.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::{Error, Result};

/// The database engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file).
    Sqlite,
    /// PostgreSQL (a server).
    Postgres,
}

/// One schema migration.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// The schema, in order. Never edit a released migration: add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "projects, images, hits, assignments, pages, records, drafts",
        sql: r#"
CREATE TABLE projects (
    id {id},
    name TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    manifest TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE images (
    id {id},
    project_id BIGINT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    class TEXT,
    known_positive BIGINT NOT NULL DEFAULT 0,
    UNIQUE (project_id, name)
);
CREATE TABLE hits (
    id {id},
    project_id BIGINT NOT NULL REFERENCES projects(id),
    ordinal BIGINT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (project_id, ordinal)
);
CREATE TABLE assignments (
    id {id},
    hit_id BIGINT NOT NULL REFERENCES hits(id),
    worker_hash TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    UNIQUE (hit_id, worker_hash)
);
CREATE TABLE pages (
    id {id},
    assignment_id BIGINT NOT NULL REFERENCES assignments(id),
    page_index BIGINT NOT NULL,
    payload TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    UNIQUE (assignment_id, page_index)
);
CREATE TABLE records (
    id {id},
    page_id BIGINT NOT NULL REFERENCES pages(id),
    image_id BIGINT NOT NULL REFERENCES images(id),
    selected BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX records_image ON records (image_id);
CREATE INDEX records_page ON records (page_id);
CREATE TABLE drafts (
    assignment_id BIGINT NOT NULL REFERENCES assignments(id),
    page_index BIGINT NOT NULL,
    payload TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (assignment_id, page_index)
);
"#,
    },
    Migration {
        version: 2,
        name: "task data of images (proposed labels, gold answers, known objects)",
        sql: "ALTER TABLE images ADD COLUMN extra TEXT;",
    },
    Migration {
        version: 3,
        name: "assignments by worker (per-labeler answers exports)",
        sql: "CREATE INDEX assignments_worker ON assignments (worker_hash);",
    },
];

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A connection pool to the studio database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// What [`Db::save_page`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The page and its records were stored now.
    Saved,
    /// This page of this assignment was already stored; nothing changed.
    AlreadySaved,
}

/// One per-image record of a submitted page.
#[derive(Debug, Clone)]
pub struct RecordRow {
    /// The image's database id.
    pub image_id: i64,
    /// Whether the annotator selected the image.
    pub selected: bool,
    /// The record as JSON (the published field names).
    pub data: String,
}

/// A HIT as the server needs it.
#[derive(Debug, Clone)]
pub struct HitRow {
    /// Database id.
    pub id: i64,
    /// The project's database id.
    pub project_id: i64,
    /// Position of the HIT in its project (0-based).
    pub ordinal: i64,
    /// The HIT specification (JSON).
    pub spec: String,
    /// The project's task type.
    pub task: String,
    /// The project's name.
    pub project: String,
}

/// An image of a project.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// Database id.
    pub id: i64,
    /// Image key (file stem, as in the releases).
    pub name: String,
    /// Path relative to the image folder.
    pub file: String,
    /// Candidate class (WordNet id), if any.
    pub class: Option<String>,
    /// Whether the image is a known positive of its class (quality control).
    pub known_positive: bool,
    /// Task data ([`crate::manifest::ImageExtra`] as JSON), if any.
    pub extra: Option<String>,
}

/// One stored record with everything an export needs.
#[derive(Debug, Clone)]
pub struct ExportRow {
    /// Image key.
    pub image: String,
    /// Candidate class of the image.
    pub class: Option<String>,
    /// HIT position in the project.
    pub hit: i64,
    /// Assignment id.
    pub assignment: i64,
    /// Keyed hash of the worker id.
    pub worker: String,
    /// Page index (0-based).
    pub page: i64,
    /// Whether the image was selected.
    pub selected: bool,
    /// The record JSON.
    pub data: String,
    /// The image's database id.
    pub image_id: i64,
    /// The image's task data (JSON), if any.
    pub extra: Option<String>,
}

/// Records per multi-row `INSERT` of an import (4 parameters each; well
/// under SQLite's and PostgreSQL's parameter limits).
const IMPORT_ROWS_PER_INSERT: usize = 200;

/// One imported record ([`Db::import_batch`]).
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// The HIT's database id.
    pub hit_id: i64,
    /// Keyed hash of the worker id.
    pub worker_hash: String,
    /// Page of the HIT (0-based).
    pub page_index: i64,
    /// The image's database id.
    pub image_id: i64,
    /// Selected / labelled.
    pub selected: bool,
    /// The record JSON (the studio's layout of the task).
    pub data: String,
}

/// Assignment and page ids an import has created or found.
#[derive(Debug, Default)]
pub struct ImportIds {
    assignments: std::collections::HashMap<(i64, String), i64>,
    pages: std::collections::HashMap<(i64, i64), i64>,
}

/// Per-worker totals over a project.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// Keyed hash of the worker id.
    pub worker: String,
    /// Assignments the worker started.
    pub assignments: i64,
    /// Pages submitted.
    pub pages: i64,
    /// Images shown on those pages.
    pub shown: i64,
    /// Images selected.
    pub selected: i64,
    /// Known-positive images shown.
    pub known_shown: i64,
    /// Known-positive images selected.
    pub known_selected: i64,
}

/// Totals of one assignment, for quality control.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRow {
    /// Assignment id.
    pub assignment: i64,
    /// HIT position in the project.
    pub hit: i64,
    /// Keyed hash of the worker id.
    pub worker: String,
    /// Pages of the HIT.
    pub hit_pages: i64,
    /// Pages submitted.
    pub pages: i64,
    /// Images shown on the submitted pages.
    pub shown: i64,
    /// Images selected.
    pub selected: i64,
    /// Known-positive images shown.
    pub known_shown: i64,
    /// Known-positive images selected.
    pub known_selected: i64,
}

impl Db {
    /// Opens (and creates, for SQLite) the database: `postgres://...` URLs go
    /// to PostgreSQL, `sqlite:...` URLs and plain paths to SQLite. Does not
    /// migrate; call [`Db::migrate`].
    pub async fn open(target: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            (target.to_string(), Backend::Postgres)
        } else if target.starts_with("sqlite:") {
            (target.to_string(), Backend::Sqlite)
        } else {
            (format!("sqlite://{target}?mode=rwc"), Backend::Sqlite)
        };
        let opts = AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never block the writer; FULL: a committed
                    // transaction is on disk before we acknowledge it.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.connect(&url).await?;
        Ok(Db { pool, backend })
    }

    /// A transaction that will write: SQLite takes the write lock at the
    /// start (`BEGIN IMMEDIATE`), so that concurrent writers wait for each
    /// other (busy timeout) instead of failing when a read lock cannot be
    /// upgraded.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// The engine behind this pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The schema version recorded in the database (0 for an empty database).
    pub async fn schema_version(&self) -> Result<i64> {
        let exists = match self.backend {
            Backend::Sqlite => sqlx::query(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'labelscope_migrations'",
            )
            .fetch_one(&self.pool)
            .await?
            .try_get::<i64, _>(0)?,
            Backend::Postgres => sqlx::query(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_name = 'labelscope_migrations'",
            )
            .fetch_one(&self.pool)
            .await?
            .try_get::<i64, _>(0)?,
        };
        if exists == 0 {
            return Ok(0);
        }
        let v: Option<i64> =
            sqlx::query("SELECT MAX(version) FROM labelscope_migrations").fetch_one(&self.pool).await?.try_get(0)?;
        Ok(v.unwrap_or(0))
    }

    /// Applies the migrations the database lacks, each in its own
    /// transaction; returns the versions applied. Refuses a database whose
    /// schema is newer than this build.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        self.migrate_to(latest_version()).await
    }

    /// [`Db::migrate`] up to `target` (for migration tests).
    pub async fn migrate_to(&self, target: i64) -> Result<Vec<i64>> {
        let current = self.schema_version().await?;
        if current > latest_version() {
            return Err(Error::Schema(format!(
                "schema version {current} is newer than this build of labelscope knows ({}); upgrade labelscope",
                latest_version()
            )));
        }
        if current == 0 {
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS labelscope_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
                 applied_ms BIGINT NOT NULL)",
            )
            .execute(&self.pool)
            .await?;
        }
        let id = match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        let mut applied = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| m.version > current && m.version <= target) {
            let sql = m.sql.replace("{id}", id);
            let mut tx = self.write_tx().await?;
            sqlx::raw_sql(&sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO labelscope_migrations (version, name, applied_ms) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            applied.push(m.version);
        }
        Ok(applied)
    }

    /// Fails unless the schema is exactly the one this build expects.
    pub async fn check_schema(&self) -> Result<()> {
        let v = self.schema_version().await?;
        if v != latest_version() {
            return Err(Error::Schema(format!(
                "schema version {v}, this build needs {}; run `labelscope studio migrate`",
                latest_version()
            )));
        }
        Ok(())
    }

    /// The pool, for queries of the other modules.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Stores a project with its images and HITs in one transaction; returns
    /// the project id. `hits` are `(token hash, pages)` with the pages' images
    /// as positions in `images`; `bind_spec(hit index, pages with database
    /// ids)` writes each HIT's spec JSON.
    pub async fn insert_project(
        &self,
        name: &str,
        task: &str,
        manifest: &str,
        images: &[ImageRow],
        hits: &[(String, Vec<Vec<usize>>)],
        bind_spec: impl Fn(usize, &[Vec<i64>]) -> String,
    ) -> Result<(i64, Vec<i64>)> {
        let mut tx = self.write_tx().await?;
        let taken: i64 = sqlx::query("SELECT COUNT(*) FROM projects WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if taken > 0 {
            return Err(Error::Invalid(format!("a project named {name:?} already exists")));
        }
        let now = now_ms();
        let pid: i64 =
            sqlx::query("INSERT INTO projects (name, task, manifest, created_ms) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(name)
                .bind(task)
                .bind(manifest)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let mut ids = Vec::with_capacity(images.len());
        for im in images {
            let id: i64 = sqlx::query(
                "INSERT INTO images (project_id, name, file, class, known_positive, extra) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(pid)
            .bind(&im.name)
            .bind(&im.file)
            .bind(im.class.clone())
            .bind(i64::from(im.known_positive))
            .bind(im.extra.clone())
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            ids.push(id);
        }
        let mut hit_ids = Vec::with_capacity(hits.len());
        for (ordinal, (token_hash, pages)) in hits.iter().enumerate() {
            let pages: Vec<Vec<i64>> = pages.iter().map(|p| p.iter().map(|&i| ids[i]).collect()).collect();
            let id: i64 = sqlx::query(
                "INSERT INTO hits (project_id, ordinal, token_hash, spec, created_ms) VALUES ($1, $2, $3, $4, $5) \
                 RETURNING id",
            )
            .bind(pid)
            .bind(ordinal as i64)
            .bind(token_hash)
            .bind(bind_spec(ordinal, &pages))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            hit_ids.push(id);
        }
        tx.commit().await?;
        Ok((pid, hit_ids))
    }

    /// The HIT whose token hashes to `token_hash`.
    pub async fn hit_by_token_hash(&self, token_hash: &str) -> Result<Option<HitRow>> {
        let row = sqlx::query(
            "SELECT h.id, h.project_id, h.ordinal, h.spec, p.task, p.name FROM hits h JOIN projects p ON p.id = \
             h.project_id WHERE h.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(HitRow {
                id: r.try_get(0)?,
                project_id: r.try_get(1)?,
                ordinal: r.try_get(2)?,
                spec: r.try_get(3)?,
                task: r.try_get(4)?,
                project: r.try_get(5)?,
            })
        })
        .transpose()
    }

    /// Images of a project by id, in the order of `ids` (ids of other
    /// projects are left out). One statement for the whole list.
    pub async fn images(&self, project_id: i64, ids: &[i64]) -> Result<Vec<ImageRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|k| format!("${}", k + 2)).collect();
            let sql =
                format!("SELECT {IMAGE_COLUMNS} FROM images WHERE project_id = $1 AND id IN ({})", marks.join(", "));
            let mut q = sqlx::query(&sql).bind(project_id);
            for &id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(image_row(&r)?);
            }
        }
        let pos: std::collections::HashMap<i64, usize> = ids.iter().enumerate().map(|(k, &id)| (id, k)).collect();
        out.sort_by_key(|r| pos.get(&r.id).copied().unwrap_or(usize::MAX));
        Ok(out)
    }

    /// All images of a project, in manifest order.
    pub async fn project_images(&self, project_id: i64) -> Result<Vec<ImageRow>> {
        let rows = sqlx::query(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE project_id = $1 ORDER BY id"))
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(image_row).collect()
    }

    /// The project id and task of the project called `name`.
    pub async fn project_by_name(&self, name: &str) -> Result<Option<(i64, String)>> {
        let row =
            sqlx::query("SELECT id, task FROM projects WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// All projects: id, name, task and number of HITs.
    pub async fn projects(&self) -> Result<Vec<(i64, String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.task, (SELECT COUNT(*) FROM hits h WHERE h.project_id = p.id) FROM projects p \
             ORDER BY p.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))).collect()
    }

    /// The assignment of `worker_hash` on HIT `hit_id`, created if new.
    pub async fn assignment(&self, hit_id: i64, worker_hash: &str) -> Result<i64> {
        // Two first requests of one worker may race: the second insert does nothing.
        sqlx::query(
            "INSERT INTO assignments (hit_id, worker_hash, started_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (hit_id, worker_hash) DO NOTHING",
        )
        .bind(hit_id)
        .bind(worker_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query("SELECT id FROM assignments WHERE hit_id = $1 AND worker_hash = $2")
            .bind(hit_id)
            .bind(worker_hash)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// The HIT and worker hash of an assignment.
    pub async fn assignment_owner(&self, assignment: i64) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT hit_id, worker_hash FROM assignments WHERE id = $1")
            .bind(assignment)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Page indices already submitted in an assignment.
    pub async fn submitted_pages(&self, assignment: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT page_index FROM pages WHERE assignment_id = $1 ORDER BY page_index")
            .bind(assignment)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Stores a submitted page and its records in one transaction. A page
    /// that was already stored is left as it is ([`SaveOutcome::AlreadySaved`]),
    /// so a client may safely retry a submission whose answer it missed.
    pub async fn save_page(
        &self,
        assignment: i64,
        page_index: i64,
        payload: &str,
        records: &[RecordRow],
    ) -> Result<SaveOutcome> {
        let mut tx = self.write_tx().await?;
        // A concurrent or earlier submission of the same page wins; this one
        // then inserts nothing.
        let inserted = sqlx::query(
            "INSERT INTO pages (assignment_id, page_index, payload, received_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (assignment_id, page_index) DO NOTHING RETURNING id",
        )
        .bind(assignment)
        .bind(page_index)
        .bind(payload)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
            tx.rollback().await?;
            return Ok(SaveOutcome::AlreadySaved);
        };
        let page_id: i64 = row.try_get(0)?;
        for r in records {
            sqlx::query("INSERT INTO records (page_id, image_id, selected, data) VALUES ($1, $2, $3, $4)")
                .bind(page_id)
                .bind(r.image_id)
                .bind(i64::from(r.selected))
                .bind(&r.data)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM drafts WHERE assignment_id = $1 AND page_index = $2")
            .bind(assignment)
            .bind(page_index)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SaveOutcome::Saved)
    }

    /// Stores (replaces) the autosaved partial work of a page.
    pub async fn save_draft(&self, assignment: i64, page_index: i64, payload: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO drafts (assignment_id, page_index, payload, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (assignment_id, page_index) DO UPDATE SET payload = excluded.payload, \
             updated_ms = excluded.updated_ms",
        )
        .bind(assignment)
        .bind(page_index)
        .bind(payload)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The autosaved partial work of a page, if any.
    pub async fn draft(&self, assignment: i64, page_index: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT payload FROM drafts WHERE assignment_id = $1 AND page_index = $2")
            .bind(assignment)
            .bind(page_index)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Every stored record of a project, ordered by image, then submission.
    pub async fn export_rows(&self, project_id: i64) -> Result<Vec<ExportRow>> {
        let rows = sqlx::query(
            "SELECT i.name, i.class, h.ordinal, a.id, a.worker_hash, p.page_index, r.selected, r.data, i.id, i.extra \
             FROM records r JOIN pages p ON p.id = r.page_id JOIN assignments a ON a.id = p.assignment_id \
             JOIN hits h ON h.id = a.hit_id JOIN images i ON i.id = r.image_id \
             WHERE i.project_id = $1 ORDER BY i.id, r.id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExportRow {
                    image: r.try_get(0)?,
                    class: r.try_get(1)?,
                    hit: r.try_get(2)?,
                    assignment: r.try_get(3)?,
                    worker: r.try_get(4)?,
                    page: r.try_get(5)?,
                    selected: r.try_get::<i64, _>(6)? != 0,
                    data: r.try_get(7)?,
                    image_id: r.try_get(8)?,
                    extra: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Per-worker totals over a project, by worker hash: the sums of the
    /// worker's [`Db::assignment_stats`].
    pub async fn worker_stats(&self, project_id: i64) -> Result<Vec<WorkerRow>> {
        Ok(sum_by_worker(&self.assignment_stats(project_id).await?))
    }

    /// Totals of every assignment of a project, by HIT then assignment.
    pub async fn assignment_stats(&self, project_id: i64) -> Result<Vec<AssignmentRow>> {
        let rows = sqlx::query(
            "SELECT a.id, h.ordinal, a.worker_hash, h.spec, COUNT(DISTINCT p.id), COUNT(r.id), \
             CAST(COALESCE(SUM(r.selected), 0) AS BIGINT), CAST(COALESCE(SUM(i.known_positive), 0) AS BIGINT), \
             CAST(COALESCE(SUM(r.selected * i.known_positive), 0) AS BIGINT) \
             FROM assignments a JOIN hits h ON h.id = a.hit_id \
             LEFT JOIN pages p ON p.assignment_id = a.id LEFT JOIN records r ON r.page_id = p.id \
             LEFT JOIN images i ON i.id = r.image_id \
             WHERE h.project_id = $1 GROUP BY a.id, h.ordinal, a.worker_hash, h.spec ORDER BY h.ordinal, a.id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let spec: String = r.try_get(3)?;
                let spec: crate::manifest::HitSpec = serde_json::from_str(&spec)
                    .map_err(|e| Error::Schema(format!("stored HIT spec is unreadable: {e}")))?;
                Ok(AssignmentRow {
                    assignment: r.try_get(0)?,
                    hit: r.try_get(1)?,
                    worker: r.try_get(2)?,
                    hit_pages: spec.pages.len() as i64,
                    pages: r.try_get(4)?,
                    shown: r.try_get(5)?,
                    selected: r.try_get(6)?,
                    known_shown: r.try_get(7)?,
                    known_selected: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Stores imported records (one transaction per call): each row's
    /// assignment (HIT, worker hash) and page are created when first seen
    /// (`ids` remembers them across calls). Returns the assignments and pages
    /// created.
    pub async fn import_batch(&self, rows: &[ImportRow], ids: &mut ImportIds) -> Result<(u64, u64)> {
        let mut tx = self.write_tx().await?;
        let (mut new_assignments, mut new_pages) = (0u64, 0u64);
        let now = now_ms();
        let mut pending: Vec<(i64, &ImportRow)> = Vec::with_capacity(rows.len());
        for r in rows {
            let akey = (r.hit_id, r.worker_hash.clone());
            let assignment = match ids.assignments.get(&akey) {
                Some(&a) => a,
                None => {
                    let done = sqlx::query(
                        "INSERT INTO assignments (hit_id, worker_hash, started_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT (hit_id, worker_hash) DO NOTHING",
                    )
                    .bind(r.hit_id)
                    .bind(&r.worker_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    new_assignments += done.rows_affected();
                    let a: i64 = sqlx::query("SELECT id FROM assignments WHERE hit_id = $1 AND worker_hash = $2")
                        .bind(r.hit_id)
                        .bind(&r.worker_hash)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get(0)?;
                    ids.assignments.insert(akey, a);
                    a
                }
            };
            let page = match ids.pages.get(&(assignment, r.page_index)) {
                Some(&p) => p,
                None => {
                    let done = sqlx::query(
                        "INSERT INTO pages (assignment_id, page_index, payload, received_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (assignment_id, page_index) DO NOTHING",
                    )
                    .bind(assignment)
                    .bind(r.page_index)
                    .bind("{\"imported\":true}")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    new_pages += done.rows_affected();
                    let p: i64 = sqlx::query("SELECT id FROM pages WHERE assignment_id = $1 AND page_index = $2")
                        .bind(assignment)
                        .bind(r.page_index)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get(0)?;
                    ids.pages.insert((assignment, r.page_index), p);
                    p
                }
            };
            pending.push((page, r));
        }
        // Multi-row inserts: far fewer statements for large imports.
        for chunk in pending.chunks(IMPORT_ROWS_PER_INSERT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|k| format!("(${}, ${}, ${}, ${})", 4 * k + 1, 4 * k + 2, 4 * k + 3, 4 * k + 4))
                .collect();
            let sql = format!("INSERT INTO records (page_id, image_id, selected, data) VALUES {}", values.join(", "));
            let mut q = sqlx::query(&sql);
            for (page, r) in chunk {
                q = q.bind(*page).bind(r.image_id).bind(i64::from(r.selected)).bind(&r.data);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok((new_assignments, new_pages))
    }

    /// Deletes a project with everything stored under it (one transaction);
    /// used to undo an import that failed half-way.
    pub async fn delete_project(&self, project_id: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let hits = "SELECT id FROM hits WHERE project_id = $1";
        let assignments = format!("SELECT id FROM assignments WHERE hit_id IN ({hits})");
        let pages = format!("SELECT id FROM pages WHERE assignment_id IN ({assignments})");
        for sql in [
            format!("DELETE FROM records WHERE page_id IN ({pages})"),
            format!("DELETE FROM pages WHERE assignment_id IN ({assignments})"),
            format!("DELETE FROM drafts WHERE assignment_id IN ({assignments})"),
            format!("DELETE FROM assignments WHERE hit_id IN ({hits})"),
            "DELETE FROM hits WHERE project_id = $1".to_string(),
            "DELETE FROM images WHERE project_id = $1".to_string(),
            "DELETE FROM projects WHERE id = $1".to_string(),
        ] {
            sqlx::query(&sql).bind(project_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Number of rows in a table (tests and statistics).
    pub async fn count(&self, table: &str) -> Result<i64> {
        if !matches!(table, "projects" | "images" | "hits" | "assignments" | "pages" | "records" | "drafts") {
            return Err(Error::Invalid(format!("unknown table {table:?}")));
        }
        Ok(sqlx::query(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Per-worker sums of assignment totals, by worker hash.
pub fn sum_by_worker(assignments: &[AssignmentRow]) -> Vec<WorkerRow> {
    let mut by_worker: std::collections::BTreeMap<String, WorkerRow> = std::collections::BTreeMap::new();
    for a in assignments {
        let w = by_worker.entry(a.worker.clone()).or_insert_with(|| WorkerRow {
            worker: a.worker.clone(),
            assignments: 0,
            pages: 0,
            shown: 0,
            selected: 0,
            known_shown: 0,
            known_selected: 0,
        });
        w.assignments += 1;
        w.pages += a.pages;
        w.shown += a.shown;
        w.selected += a.selected;
        w.known_shown += a.known_shown;
        w.known_selected += a.known_selected;
    }
    by_worker.into_values().collect()
}

const IMAGE_COLUMNS: &str = "id, name, file, class, known_positive, extra";

fn image_row(r: &AnyRow) -> Result<ImageRow> {
    Ok(ImageRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        file: r.try_get(2)?,
        class: r.try_get(3)?,
        known_positive: r.try_get::<i64, _>(4)? != 0,
        extra: r.try_get(5)?,
    })
}
