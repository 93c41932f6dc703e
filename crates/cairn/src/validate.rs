//! `cairn validate FILE...`: parse and check workflow files without running them.

use std::path::PathBuf;

use anyhow::Result;
use cairn_core::spec;

use crate::Exit;
use crate::out::outln;

#[derive(clap::Args)]
pub struct Args {
    /// Workflow files to check
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn validate(args: Args) -> Result<Exit> {
    let mut bad = 0;
    for file in &args.files {
        match spec::load(file) {
            Ok(w) => {
                let handlers = w.handlers.iter().count();
                outln!(
                    "ok  {}: workflow {:?}, {} steps{}",
                    file.display(),
                    w.name,
                    w.steps.len(),
                    if handlers > 0 { format!(", {handlers} handlers") } else { String::new() }
                );
                for warning in &w.warnings {
                    outln!("    warning: {warning}");
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    Ok(if bad == 0 { Exit::Success } else { Exit::Invalid })
}
