use std::path::PathBuf;
use anyhow::Context;
use labelscope_core::wordnet;
fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let wn = wordnet::NounHypernyms::from_dir(&PathBuf::from(&a[1]))?;
    let s = wordnet::generate_table_json(&PathBuf::from(&a[2]), &wn)?;
    std::fs::write(&a[3], s).context("write")?;
    Ok(())
}
