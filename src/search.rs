//! Search: evolution of NetSpecs under a target's budgets, in a resumable run directory.

use clap::Args;

#[derive(Debug, Args)]
pub struct SearchArgs {}

#[derive(Debug, Args)]
pub struct EvalArgs {}

pub fn run(_a: SearchArgs) -> anyhow::Result<()> {
    Err(crate::NotYetImplemented("search").into())
}

pub fn eval(_a: EvalArgs) -> anyhow::Result<()> {
    Err(crate::NotYetImplemented("eval").into())
}
