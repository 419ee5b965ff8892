//! The Python package (`crates/py`): builds the abi3 wheel with maturin, installs it into a
//! virtual environment under `target/` (with the system's site packages, for numpy, scipy,
//! scikit-learn and pycocotools, the references) and runs its pytest suite, with this build's
//! `labelscope` binary for the tests that compare with the CLI. Needs `python3 -m maturin` and
//! `pytest` (`.ci/run` installs them); without them the test fails when `CI=true` and is skipped
//! (with a message) otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

fn have(py: &str, module: &str) -> bool {
    Command::new(py).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn python_package_builds_as_abi3_and_its_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    for m in ["maturin", "pytest", "numpy"] {
        if !have(&py, m) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{py} has no {m} (CI=true: the Python tests must run)"
            );
            eprintln!("skipped: {py} has no {m} (python3 -m pip install maturin pytest numpy)");
            return;
        }
    }
    let target = root.join("target");
    let wheels = target.join("py-wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    let manifest = root.join("crates/py/Cargo.toml");
    run(
        Command::new(&py)
            .args(["-m", "maturin", "build", "--release", "--locked", "--quiet", "-m"])
            .arg(&manifest)
            .arg("-o")
            .arg(&wheels)
            .env("CARGO_TARGET_DIR", target.join("py"))
            .env_remove("CARGO_BUILD_TARGET"),
        "maturin build",
    );
    let wheel: PathBuf = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("maturin wrote no wheel");
    let name = wheel.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.contains("-cp39-abi3-"), "not an abi3 wheel for CPython 3.9+: {name}");
    let venv = target.join("py-venv");
    if !venv.join("bin/python").exists() {
        run(Command::new(&py).args(["-m", "venv", "--system-site-packages"]).arg(&venv), "python3 -m venv");
    }
    let vpy = venv.join("bin/python");
    run(
        Command::new(&vpy).args(["-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall"]).arg(&wheel),
        "pip install the wheel",
    );
    let out = run(
        Command::new(&vpy)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(root.join("crates/py/tests"))
            .env("LABELSCOPE_BIN", env!("CARGO_BIN_EXE_labelscope"))
            .current_dir(root.join("crates/py")),
        "pytest crates/py/tests",
    );
    eprintln!("{out}");
    assert!(out.contains(" passed"), "{out}");
}
