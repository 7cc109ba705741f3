//! `cairn presets list|show`: the host presets, built in and from cairn.toml.

use crate::args::Global;
use crate::exit::Code;
use crate::output;
use anyhow::Result;
use cairn_store::host::config;
use clap::Subcommand;
use std::path::PathBuf;

/// `cairn presets …`.
#[derive(Subcommand, Debug)]
pub enum PresetsCommand {
    /// List the presets: name, where defined, number of paths, markers.
    List {
        /// Configuration file with user presets (default /etc/cairn/cairn.toml when it
        /// exists).
        #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show one preset's paths and marker files.
    Show {
        /// Preset name.
        name: String,
        /// Configuration file with user presets.
        #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(g: &Global, c: PresetsCommand) -> Result<Code> {
    match c {
        PresetsCommand::List { config } => {
            let all = config::load(config.as_deref())?;
            if g.json {
                output::json(&all)?;
            } else if !g.quiet {
                crate::outln!("{:<24} {:<10} {:>5}  MARKERS", "NAME", "ORIGIN", "PATHS")?;
                for p in &all {
                    crate::outln!(
                        "{:<24} {:<10} {:>5}  {}",
                        p.name,
                        p.origin,
                        p.paths.len(),
                        p.markers.join(" + ")
                    )?;
                }
            }
        }
        PresetsCommand::Show { name, config } => {
            let all = config::load(config.as_deref())?;
            let Some(p) = all.iter().find(|p| p.name == name) else {
                return Err(crate::exit::usage(
                    format!("no preset named {name:?}"),
                    "`cairn presets list` shows them",
                ));
            };
            if g.json {
                output::json(p)?;
            } else if !g.quiet {
                crate::outln!("{}: {} ({})", p.name, p.description, p.origin)?;
                crate::outln!("paths:")?;
                for path in &p.paths {
                    crate::outln!("  {path}")?;
                }
                crate::outln!("markers (all must exist for --preset auto):")?;
                for m in &p.markers {
                    crate::outln!("  {m}")?;
                }
            }
        }
    }
    Ok(Code::Ok)
}
