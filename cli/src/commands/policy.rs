//! `cairn policy show|allow-host-retention|deny-host-retention`.

use crate::args::{Global, PolicyCommand};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::Result;
use cairn_store::policy;

pub fn run(g: &Global, c: PolicyCommand) -> Result<Code> {
    let repo = credentials::open(g)?;
    match c {
        PolicyCommand::Show => {}
        PolicyCommand::AllowHostRetention => policy::set_host_retention(&repo, true)?,
        PolicyCommand::DenyHostRetention => policy::set_host_retention(&repo, false)?,
    }
    let allowed = policy::host_retention_allowed(&repo)?;
    if g.json {
        output::json(&serde_json::json!({ "host_retention": allowed }))?;
    } else if !g.quiet {
        crate::outln!(
            "{}",
            if allowed {
                "write keys may forget, prune and repair (host-side retention allowed)"
            } else {
                "write keys are append-only: forget, prune and repair need the identity"
            }
        )?;
    }
    Ok(Code::Ok)
}
