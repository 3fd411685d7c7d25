//! What a run is configured with (`config.json`), and its validation: the same checks for
//! command-line arguments and for a configuration read back on resume.

use super::*;

/// How candidates are trained and scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Training {
    /// One stratified fold held out for validation (the seed's default during search).
    Proxy,
    /// k-fold cross-validation: the score is the mean over folds (the seed's `use_full_training`).
    Full,
}

/// The validation figure that selects parents and the winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Accuracy,
    WeightedF1,
    MacroF1,
}

impl Metric {
    pub fn of(self, m: &Metrics) -> f64 {
        match self {
            Metric::Accuracy => m.accuracy,
            Metric::WeightedF1 => m.weighted_f1,
            Metric::MacroF1 => m.macro_f1,
        }
    }
}

/// Everything a run needs, saved as `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub tool_version: String,
    pub target: Target,
    pub limits: Limits,
    pub data: DataSource,
    pub space: SearchSpace,
    pub generations: usize,
    pub children: usize,
    pub mutations: usize,
    pub random_start: bool,
    pub random_walk: bool,
    pub seed: u64,
    pub training: Training,
    pub folds: usize,
    pub metric: Metric,
    pub train: TrainConfig,
    pub inherit: bool,
    pub max_tries: usize,
    /// Measure every candidate's footprint from a cross-compiled ELF (`--verify`).
    #[serde(default)]
    pub verify: bool,
    /// The element type candidates are deployed in: int8 candidates are costed as int8 and
    /// scored after post-training quantization (`--dtype`).
    #[serde(default)]
    pub dtype: crate::net::Dtype,
    /// How the finalists are trained before delivery (see `deliver`).
    #[serde(default = "TrainConfig::delivery")]
    pub final_train: TrainConfig,
    /// How many of the best distinct architectures get final training; 0 delivers the best
    /// proxy-trained candidate as it is.
    #[serde(default = "one")]
    pub final_top: usize,
    /// Final training starts from the candidate's proxy weights (else from a fresh start).
    #[serde(default = "yes")]
    pub final_warm_start: bool,
    /// How the next parent is chosen (`--objective`; see `pareto`).
    #[serde(default)]
    pub objective: Objective,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

impl RunConfig {
    /// The checks `nas search` applies to its arguments, also applied to a configuration read
    /// back from a run directory (an edited `config.json` must fail here, not panic later).
    pub fn validate(&self) -> Result<()> {
        self.target
            .check()
            .with_context(|| format!("invalid target profile '{}'", self.target.name))?;
        anyhow::ensure!(
            self.folds >= 2,
            "folds must be at least 2 (got {})",
            self.folds
        );
        anyhow::ensure!(self.children > 0, "children must be positive");
        anyhow::ensure!(
            self.generations
                .checked_mul(self.children)
                .is_some_and(|n| n < usize::MAX),
            "{} generations × {} children is more candidates than can be counted",
            self.generations,
            self.children
        );
        anyhow::ensure!(self.max_tries > 0, "max tries must be positive");
        self.space.validate()?;
        self.train.validate()?;
        self.final_train
            .validate()
            .context("final training settings")?;
        cost::check_latency_budget(&self.target, &self.limits, self.dtype)?;
        Ok(())
    }
}

/// A deterministic RNG for one purpose at one position of the run.
pub(crate) fn rng_for(seed: u64, generation: usize, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(
        stream
            .wrapping_mul(0x1_0000)
            .wrapping_add(generation as u64),
    );
    r
}

/// Cost of a spec on the run's target under the run's limits, deployed in `dtype`.
pub fn cost_of(
    spec: &NetSpec,
    target: &Target,
    limits: &Limits,
    dtype: crate::net::Dtype,
) -> Result<Cost> {
    Ok(cost::cost_as(&plan::lower(spec)?, target, limits, dtype))
}
