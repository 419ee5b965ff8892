//! Feature cache: durability and resume. Files truncated at arbitrary byte
//! offsets come back as the longest prefix of complete records; a writer
//! killed with SIGKILL mid-shard resumes without duplicating or dropping
//! images; images already present are skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use labelscope_relabel::cache::{CacheSpec, CacheWriter, FeatureCache, ImageFeatures, Shard, TokenKind};

/// Test value of image `k`, record row `t`, channel `c`: a multiple of 1/8 in
/// [-4, 3.875], exact in f16, so reads must give it back unchanged.
fn value(k: u64, t: usize, c: usize) -> f32 {
    ((k * 31 + t as u64 * 7 + c as u64 * 3) % 64) as f32 / 8.0 - 4.0
}

/// Grid of image `k`.
fn grid(k: u64) -> (usize, usize) {
    (1 + (k % 3) as usize, 1 + (k % 2) as usize)
}

fn spec(dim: usize, cls: bool) -> CacheSpec {
    CacheSpec { backbone: "tiny".into(), recipe: "fixed32".into(), tokens: TokenKind::Patch, dim, cls }
}

struct Img {
    id: String,
    h: usize,
    w: usize,
    patches: Vec<f32>,
    cls: Option<Vec<f32>>,
}

fn make(k: u64, dim: usize, cls: bool) -> Img {
    let (h, w) = grid(k);
    let off = usize::from(cls);
    Img {
        id: format!("im{k:05}"),
        h,
        w,
        patches: (0..h * w).flat_map(|t| (0..dim).map(move |c| value(k, t + off, c))).collect(),
        cls: cls.then(|| (0..dim).map(|c| value(k, 0, c)).collect()),
    }
}

fn view(i: &Img) -> ImageFeatures<'_> {
    ImageFeatures { id: &i.id, h: i.h, w: i.w, patches: &i.patches, cls: i.cls.as_deref() }
}

/// Checks that every image of `imgs` in the finished cache has its values.
fn check_all(dir: &Path, imgs: &[Img]) {
    let cache = FeatureCache::open(dir).unwrap();
    assert_eq!(cache.len(), imgs.len());
    cache.verify().unwrap();
    for i in imgs {
        let f = cache.get(&i.id).unwrap();
        assert_eq!((f.h, f.w), (i.h, i.w), "{}", i.id);
        assert_eq!(f.patches_f32(), i.patches, "{}", i.id);
        assert_eq!(f.cls_f32(), i.cls, "{}", i.id);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
fn truncation_at_any_offset_keeps_the_complete_prefix() {
    let (dim, cls) = (3, true);
    let imgs: Vec<Img> = (0..9).map(|k| make(k, dim, cls)).collect();
    let ids: Vec<&str> = imgs.iter().map(|i| i.id.as_str()).collect();
    let base = tempfile::tempdir().unwrap();
    let reference = base.path().join("ref");
    {
        let mut w = CacheWriter::open(&reference, &spec(dim, cls), Shard::ALL).unwrap();
        for chunk in imgs.chunks(2) {
            let batch: Vec<ImageFeatures> = chunk.iter().map(view).collect();
            w.append_batch(&batch).unwrap();
        }
        // Not finished: an interrupted shard.
    }
    let shard = Shard::ALL;
    let (data, index) = (shard.data_path(&reference), shard.index_path(&reference));
    let index_bytes = std::fs::read(&index).unwrap();
    let data_len = std::fs::metadata(&data).unwrap().len();
    // Independent bookkeeping: image k has 1 + h*w rows of dim f16 values
    // after the 4096-byte header; index line k ends at its k-th newline.
    let mut data_ends = Vec::new();
    let mut rows = 0u64;
    for i in &imgs {
        rows += 1 + (i.h * i.w) as u64;
        data_ends.push(4096 + rows * dim as u64 * 2);
    }
    assert_eq!(data_len, *data_ends.last().unwrap());
    let line_ends: Vec<u64> =
        index_bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(p, _)| p as u64 + 1).collect();
    assert_eq!(line_ends.len(), imgs.len());

    let mut offsets: Vec<(Option<u64>, Option<u64>)> = Vec::new();
    for y in 0..=index_bytes.len() as u64 {
        offsets.push((Some(y), None));
    }
    for x in [0, 1, 7, 8, 9, 100, 4095, 4096].into_iter().chain(4097..=data_len) {
        offsets.push((None, Some(x)));
    }
    // Both files cut, at pseudo-random positions (a fixed LCG).
    let mut s = 12345u64;
    for _ in 0..40 {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let y = (s >> 33) % (index_bytes.len() as u64 + 1);
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let x = 4096 + (s >> 33) % (data_len - 4096 + 1);
        offsets.push((Some(y), Some(x)));
    }
    for (case, &(y, x)) in offsets.iter().enumerate() {
        let dir = base.path().join(format!("case{case}"));
        copy_dir(&reference, &dir);
        if let Some(y) = y {
            truncate(&shard.index_path(&dir), y);
        }
        if let Some(x) = x {
            truncate(&shard.data_path(&dir), x);
        }
        let by_index = y.map_or(imgs.len(), |y| line_ends.iter().filter(|&&e| e <= y).count());
        let by_data = x.map_or(imgs.len(), |x| data_ends.iter().filter(|&&e| e <= x).count());
        let kept = by_index.min(by_data);
        let mut w = CacheWriter::open(&dir, &spec(dim, cls), shard).unwrap();
        let what = format!("index cut at {y:?}, data cut at {x:?}");
        assert_eq!(w.len(), kept, "{what}");
        assert_eq!(w.recovery().images, kept, "{what}");
        assert_eq!(w.missing(&ids), ids[kept..].to_vec(), "{what}");
        // The files were cut back to exactly the kept records.
        let keep_index = if kept == 0 { 0 } else { line_ends[kept - 1] };
        let keep_data = if kept == 0 { 4096 } else { data_ends[kept - 1] };
        assert_eq!(std::fs::metadata(shard.index_path(&dir)).unwrap().len(), keep_index, "{what}");
        assert_eq!(std::fs::metadata(shard.data_path(&dir)).unwrap().len(), keep_data, "{what}");
        // Resume: feed every image again; present ones are skipped.
        let batch: Vec<ImageFeatures> = imgs.iter().map(view).collect();
        assert_eq!(w.append_batch(&batch).unwrap(), imgs.len() - kept, "{what}");
        w.finish(&ids).unwrap();
        check_all(&dir, &imgs);
        // Storage order is still the write order.
        let cache = FeatureCache::open(&dir).unwrap();
        assert_eq!(cache.ids().collect::<Vec<_>>(), ids, "{what}");
        drop(cache);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn unsynced_appends_are_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (dim, cls) = (4, false);
    let imgs: Vec<Img> = (0..5).map(|k| make(k, dim, cls)).collect();
    let mut w = CacheWriter::open(dir.path(), &spec(dim, cls), Shard::ALL).unwrap();
    w.append_batch(&[view(&imgs[0]), view(&imgs[1])]).unwrap();
    // Rows of two more images reach the data file, but the writer "crashes"
    // before `sync` writes their index lines.
    assert!(w.append(&view(&imgs[2])).unwrap());
    assert!(w.append(&view(&imgs[3])).unwrap());
    drop(w);
    let unsynced = ((imgs[2].h * imgs[2].w + imgs[3].h * imgs[3].w) * dim * 2) as u64;
    let mut w = CacheWriter::open(dir.path(), &spec(dim, cls), Shard::ALL).unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w.recovery().data_bytes_cut, unsynced);
    assert_eq!(w.recovery().index_bytes_cut, 0);
    assert!(w.contains(&imgs[1].id) && !w.contains(&imgs[2].id));
    let all: Vec<ImageFeatures> = imgs.iter().map(view).collect();
    assert_eq!(w.append_batch(&all).unwrap(), 3);
    w.finish(&imgs.iter().map(|i| i.id.as_str()).collect::<Vec<_>>()).unwrap();
    check_all(dir.path(), &imgs);
}

#[test]
fn present_images_are_skipped_and_complete_shards_take_no_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (dim, cls) = (2, true);
    let imgs: Vec<Img> = (0..4).map(|k| make(k, dim, cls)).collect();
    let ids: Vec<&str> = imgs.iter().map(|i| i.id.as_str()).collect();
    let sp = spec(dim, cls);
    let mut w = CacheWriter::open(dir.path(), &sp, Shard::ALL).unwrap();
    assert!(w.append(&view(&imgs[0])).unwrap());
    assert!(!w.append(&view(&imgs[0])).unwrap(), "a present image is skipped");
    // Repeated within a batch and already present: written once.
    assert_eq!(w.append_batch(&[view(&imgs[0]), view(&imgs[1]), view(&imgs[1])]).unwrap(), 1);
    drop(w);
    let mut w = CacheWriter::open(dir.path(), &sp, Shard::ALL).unwrap();
    assert_eq!(w.missing(&ids), ["im00002", "im00003"]);
    assert_eq!(w.append_batch(&[view(&imgs[2]), view(&imgs[3])]).unwrap(), 2);
    w.finish(&ids).unwrap();
    check_all(dir.path(), &imgs);

    let mut w = CacheWriter::open(dir.path(), &sp, Shard::ALL).unwrap();
    assert!(w.is_complete());
    assert!(!w.append(&view(&imgs[1])).unwrap());
    let extra = make(9, dim, cls);
    let e = w.append(&view(&extra)).unwrap_err().to_string();
    assert!(e.contains("im00009") && e.contains("complete") && e.contains("shard-00000-of-00001.done.json"), "{e}");
    // Finishing again is harmless.
    w.finish(&ids).unwrap();
    check_all(dir.path(), &imgs);
}

#[test]
fn damaged_complete_shard_reopens_for_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (dim, cls) = (2, false);
    let imgs: Vec<Img> = (0..4).map(|k| make(k, dim, cls)).collect();
    let ids: Vec<&str> = imgs.iter().map(|i| i.id.as_str()).collect();
    let sp = spec(dim, cls);
    let mut w = CacheWriter::open(dir.path(), &sp, Shard::ALL).unwrap();
    w.append_batch(&imgs.iter().map(view).collect::<Vec<_>>()).unwrap();
    w.finish(&ids).unwrap();
    labelscope_relabel::cache::finalize(dir.path(), &ids).unwrap();
    let data = Shard::ALL.data_path(dir.path());
    let len = std::fs::metadata(&data).unwrap().len();
    truncate(&data, len - 1);
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("shard-00000-of-00001.safetensors") && e.contains("truncated"), "{e}");
    // A writer reopening the shard drops the marker and the last image.
    let mut w = CacheWriter::open(dir.path(), &sp, Shard::ALL).unwrap();
    assert!(w.recovery().stale_marker_removed);
    assert!(!w.is_complete());
    assert_eq!(w.missing(&ids), ["im00003"]);
    assert!(!dir.path().join("complete.json").exists());
    w.append_batch(&imgs.iter().map(view).collect::<Vec<_>>()).unwrap();
    w.finish(&ids).unwrap();
    check_all(dir.path(), &imgs);
}

const CHILD_ENV: &str = "LABELSCOPE_CACHE_KILL_CHILD_DIR";
const CHILD_IMAGES: u64 = 3000;

fn child_images() -> Vec<Img> {
    (0..CHILD_IMAGES).map(|k| make(k, 16, true)).collect()
}

/// The writer process of `writer_killed_with_sigkill_resumes`; does nothing
/// unless started by it.
#[test]
fn child_writer_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let imgs = child_images();
    let mut w = CacheWriter::open(&dir, &spec(16, true), Shard::ALL).unwrap();
    for (c, chunk) in imgs.chunks(2).enumerate() {
        let batch: Vec<ImageFeatures> = chunk.iter().map(view).collect();
        w.append_batch(&batch).unwrap();
        // One more unsynced append between batches (the next batch skips
        // it), so a kill can also land after rows were written but before
        // their index line.
        if let Some(next) = imgs.get(2 * c + 2) {
            w.append(&view(next)).unwrap();
        }
    }
    w.finish(&imgs.iter().map(|i| i.id.as_str()).collect::<Vec<_>>()).unwrap();
}

#[test]
fn writer_killed_with_sigkill_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = child_images();
    let ids: Vec<&str> = imgs.iter().map(|i| i.id.as_str()).collect();
    let index = Shard::ALL.index_path(dir.path());
    for round in 0..2 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer_process", "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, dir.path())
            .spawn()
            .unwrap();
        // Wait until the child has written some images beyond what the last
        // round left, then kill it (SIGKILL); if it finishes first, the test
        // still checks a complete shard.
        let target = 100 * (round + 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let lines = std::fs::read(&index).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
            if lines >= target || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().ok();
        child.wait().unwrap();
        // Reopen: every image in the shard is one of ours, once, with its values.
        let w = CacheWriter::open(dir.path(), &spec(16, true), Shard::ALL).unwrap();
        let n = w.len();
        assert!(n <= imgs.len());
        eprintln!("round {round}: killed with {n} images on disk; reopening found {:?}", w.recovery());
        drop(w);
    }
    let mut w = CacheWriter::open(dir.path(), &spec(16, true), Shard::ALL).unwrap();
    let before = w.len();
    let written = w.append_batch(&imgs.iter().map(view).collect::<Vec<_>>()).unwrap();
    assert_eq!(before + written, imgs.len(), "no image lost or written twice");
    w.finish(&ids).unwrap();
    check_all(dir.path(), &imgs);
}
