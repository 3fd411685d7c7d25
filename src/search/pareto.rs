//! The run's Pareto front: the evaluated candidates that no other candidate beats on every
//! objective at once — validation score (higher is better), flash, RAM and estimated latency
//! (lower is better) — kept in `pareto.json` and rewritten (atomically) after every candidate.
//!
//! The score is the search's validation score (proxy training unless `--training full`), the
//! figure candidates are compared by; final training does not move a point. The file's content
//! depends only on the set of finished candidates, not on the order they finish in.
//!
//! A reused duplicate (a candidate that recreated an earlier architecture) is the same point as
//! the candidate it reuses and is counted once, under the earlier id. When the target has no
//! latency model the latency objective is left out (all points tie on it).
//!
//! With `--objective pareto` the next parent is drawn from the generation's children on the
//! front as it stands after that generation (candidates of later generations never count, so a
//! resumed run draws the same parents), with a generator seeded by the run seed and the
//! generation.

use super::*;
use crate::search::rundir::{Record, Run};

/// The front's file, relative to the run directory.
pub use super::layout::PARETO;

/// How the parent of the next generation is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The child with the best validation score (the seed's rule).
    #[default]
    Score,
    /// A child on the run's Pareto front (score, flash, RAM, latency), drawn at random (seeded);
    /// the score rule when no child is on it.
    Pareto,
}

/// One evaluated architecture, as the front sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub id: String,
    pub generation: usize,
    /// Validation score by the run's metric.
    pub score: f64,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    /// Estimated instructions and latency per inference (absent without a latency model).
    pub instructions: Option<u64>,
    pub latency_ms: Option<f64>,
    pub params: u64,
    pub summary: String,
}

impl Point {
    pub fn new(rec: &Record, c: &Cost) -> Point {
        Point {
            id: rec.id.clone(),
            generation: rec.generation,
            score: rec.score,
            flash_bytes: c.flash_bytes,
            ram_bytes: c.ram_bytes,
            instructions: c.instructions,
            latency_ms: c.latency_ms,
            params: c.params,
            summary: rec.summary.clone(),
        }
    }
}

/// `a` dominates `b`: no worse on every objective and better on at least one. Latency takes
/// part only when both points have an estimate.
pub fn dominates(a: &Point, b: &Point) -> bool {
    let mut better = false;
    let mut check = |no_worse: bool, strictly: bool| {
        better |= strictly;
        no_worse
    };
    let score = check(a.score >= b.score, a.score > b.score);
    let flash = check(
        a.flash_bytes <= b.flash_bytes,
        a.flash_bytes < b.flash_bytes,
    );
    let ram = check(a.ram_bytes <= b.ram_bytes, a.ram_bytes < b.ram_bytes);
    let latency = match (a.latency_ms, b.latency_ms) {
        (Some(x), Some(y)) => check(x <= y, x < y),
        _ => true,
    };
    score && flash && ram && latency && better
}

/// The points no other point dominates, in their order.
pub fn front(points: &[Point]) -> Vec<Point> {
    points
        .iter()
        .filter(|p| !points.iter().any(|q| dominates(q, p)))
        .cloned()
        .collect()
}

/// `pareto.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParetoFile {
    /// The objectives, and in which direction each is better.
    pub objectives: Vec<String>,
    /// The non-dominated points, in candidate order.
    pub members: Vec<Point>,
    /// Every distinct evaluated architecture (reused duplicates once), in candidate order.
    pub evaluated: Vec<Point>,
}

fn objectives() -> Vec<String> {
    [
        "score (max)",
        "flash_bytes (min)",
        "ram_bytes (min)",
        "latency_ms (min)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Read a run's `pareto.json` (empty when the run has none yet).
pub fn load(dir: &Path) -> Result<ParetoFile> {
    let p = super::layout::Layout::new(dir).pareto();
    if !p.exists() {
        return Ok(ParetoFile::default());
    }
    read_json(&p).with_context(|| format!("cannot read the Pareto front {}", p.display()))
}

/// Add a finished candidate (its record and cost) to the run's front and rewrite
/// `pareto.json`. Idempotent: a candidate already there is replaced by itself, so a resumed run
/// can pass every candidate again. Reused duplicates are skipped (their original counts).
pub fn update(run: &Run, rec: &Record, c: &Cost) -> Result<()> {
    if rec.duplicate_of.is_some() {
        return Ok(());
    }
    let mut file = load(&run.dir)?;
    let p = Point::new(rec, c);
    match file.evaluated.iter_mut().find(|q| q.id == p.id) {
        Some(q) => *q = p,
        None => file.evaluated.push(p),
    }
    file.evaluated.sort_by(|a, b| a.id.cmp(&b.id));
    file.members = front(&file.evaluated);
    file.objectives = objectives();
    write_json(&run.files().pareto(), &file)
}

/// The front over the candidates of generations up to `generation`.
pub fn front_until(dir: &Path, generation: usize) -> Result<Vec<Point>> {
    let file = load(dir)?;
    let upto: Vec<Point> = file
        .evaluated
        .into_iter()
        .filter(|p| p.generation <= generation)
        .collect();
    Ok(front(&upto))
}

/// With `--objective pareto`, the next parent: one of generation `generation`'s `children` on
/// the front of the candidates so far, drawn with a generator seeded by the run seed and the
/// generation. `None` under `--objective score`, or when no child is on the front (the caller
/// then applies the score rule).
pub(crate) fn next_parent(
    run: &Run,
    generation: usize,
    children: &[(Record, Weights)],
) -> Result<Option<(Record, Weights)>> {
    if run.config.objective != Objective::Pareto {
        return Ok(None);
    }
    let members = front_until(&run.dir, generation)?;
    let on_front: Vec<&(Record, Weights)> = children
        .iter()
        .filter(|(r, _)| {
            let id = r.duplicate_of.as_deref().unwrap_or(&r.id);
            members.iter().any(|m| m.id == id)
        })
        .collect();
    if on_front.is_empty() {
        return Ok(None);
    }
    let mut rng = rng_for(run.config.seed, generation, PARENT_STREAM);
    let k = rng.random_range(0..on_front.len());
    Ok(Some(on_front[k].clone()))
}

/// The generator stream of the Pareto parent draw (apart from mutation and training streams).
const PARENT_STREAM: u64 = 0xFA7E;

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(id: &str, score: f64, flash: u64, ram: u64, lat: Option<f64>) -> Point {
        Point {
            id: id.into(),
            generation: 0,
            score,
            flash_bytes: flash,
            ram_bytes: ram,
            instructions: lat.map(|l| (l * 84_000.0) as u64),
            latency_ms: lat,
            params: 0,
            summary: String::new(),
        }
    }

    #[test]
    fn dominance_needs_no_worse_everywhere_and_better_somewhere() {
        let a = pt("a", 0.9, 100, 100, Some(1.0));
        // Better score, same else: dominates; not the other way round.
        let b = pt("b", 0.8, 100, 100, Some(1.0));
        assert!(dominates(&a, &b) && !dominates(&b, &a));
        // Equal points do not dominate each other.
        let a2 = pt("a2", 0.9, 100, 100, Some(1.0));
        assert!(!dominates(&a, &a2) && !dominates(&a2, &a));
        // A trade-off: neither dominates.
        let c = pt("c", 0.95, 200, 100, Some(1.0));
        assert!(!dominates(&a, &c) && !dominates(&c, &a));
        // Each of flash, RAM and latency alone decides.
        assert!(dominates(&a, &pt("f", 0.9, 101, 100, Some(1.0))));
        assert!(dominates(&a, &pt("r", 0.9, 100, 101, Some(1.0))));
        assert!(dominates(&a, &pt("l", 0.9, 100, 100, Some(1.5))));
        assert!(!dominates(&a, &pt("l2", 0.9, 100, 100, Some(0.5))));
        // Without an estimate on either side latency does not take part.
        assert!(dominates(
            &pt("x", 0.9, 100, 100, None),
            &pt("y", 0.9, 100, 101, Some(0.1))
        ));
        assert!(!dominates(
            &pt("x", 0.9, 100, 100, None),
            &pt("y", 0.9, 100, 100, Some(0.1))
        ));
    }

    #[test]
    fn front_keeps_exactly_the_non_dominated() {
        let pts = vec![
            pt("g000-c00", 0.70, 50_000, 20_000, Some(10.0)), // dominated by g001-c01
            pt("g001-c00", 0.90, 200_000, 40_000, Some(30.0)), // best score
            pt("g001-c01", 0.75, 40_000, 20_000, Some(9.0)),  // small and fast
            pt("g001-c02", 0.60, 30_000, 30_000, Some(20.0)), // smallest flash
            pt("g002-c00", 0.60, 30_000, 31_000, Some(20.0)), // dominated by g001-c02
            pt("g002-c01", 0.80, 100_000, 25_000, Some(8.0)), // fastest
        ];
        let f = front(&pts);
        let ids: Vec<&str> = f.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["g001-c00", "g001-c01", "g001-c02", "g002-c01"]);
        for p in &pts {
            let member = ids.contains(&p.id.as_str());
            let dominated = pts.iter().any(|q| dominates(q, p));
            assert_eq!(member, !dominated, "{}", p.id);
        }
        // Ties stay on the front together.
        let tie = vec![pt("a", 0.5, 1, 1, None), pt("b", 0.5, 1, 1, None)];
        assert_eq!(front(&tie).len(), 2);
        assert!(front(&[]).is_empty());
    }
}
