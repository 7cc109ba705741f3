//! Writes seed inputs into `corpus/<target>/seed-<n>` (relative to the current directory).
//! Run from `fuzz/`: `cargo run --example seeds`.

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    for (target, inputs) in cairn_format_fuzz::seeds() {
        let dir = Path::new("corpus").join(target);
        fs::create_dir_all(&dir)?;
        for (i, input) in inputs.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i}")), input)?;
        }
        println!("{target}: {} seeds in {}", inputs.len(), dir.display());
    }
    Ok(())
}
