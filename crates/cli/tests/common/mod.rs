//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `../shared/data`, or None (after a message) when it is missing outside CI.
/// In CI a missing folder fails the test.
pub fn shared_data() -> Option<PathBuf> {
    let p = repo_root().join("../shared/data");
    if p.join("imagenet/real.json").exists() {
        return Some(p);
    }
    if in_ci() {
        panic!("CI=true but the shared data folder {} is missing", p.display());
    }
    eprintln!("skipping: {} not found", p.display());
    None
}

/// Runs a Python reference script from tests/reference and parses its JSON
/// output. None (after a message) when Python or its packages are missing
/// outside CI; a failure in CI.
pub fn python_reference(script: &str, args: &[&str]) -> Option<serde_json::Value> {
    let python = std::env::var("LABELSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo_root().join("tests/reference").join(script);
    let out = Command::new(&python).arg(&script).args(args).output();
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).expect("reference script prints JSON")),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            if in_ci() {
                panic!("reference script {} failed: {why}", script.display());
            }
            eprintln!("skipping: reference script failed ({why})");
            None
        }
    }
}

/// Runs the labelscope binary.
pub fn labelscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labelscope")).args(args).current_dir(repo_root()).output().expect("run labelscope")
}

/// Runs labelscope, asserts success, and returns standard output.
pub fn labelscope_ok(args: &[&str]) -> String {
    let o = labelscope(args);
    assert!(o.status.success(), "labelscope {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 output")
}

/// Runs labelscope, asserts failure (exit code 1), no panic, and returns standard error.
pub fn labelscope_err(args: &[&str]) -> String {
    let o = labelscope(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "labelscope {args:?} should fail with exit 1; stderr:\n{err}");
    assert!(!err.contains("panicked"), "labelscope {args:?} panicked:\n{err}");
    assert!(o.stdout.is_empty(), "no partial output on failure, got {:?}", String::from_utf8_lossy(&o.stdout));
    err
}

/// Finds the (correct, total) of a result row.
pub fn row_counts(json: &serde_json::Value, model: &str, metric: &str, subset: &str) -> Option<(u64, u64)> {
    json["rows"].as_array()?.iter().find_map(|r| {
        (r["model"] == model && r["metric"] == metric && r["subset"] == subset)
            .then(|| (r["correct"].as_u64().unwrap(), r["total"].as_u64().unwrap()))
    })
}
