//! Executors: where a generation's candidates are trained.
//!
//! - inline, one at a time in this process (the default; progress per step);
//! - `--jobs N`: N worker processes on this machine (`nas worker`), the cores split between
//!   them;
//! - `--executor slurm`: one Slurm job array per generation (`sbatch --array`), each task a
//!   `nas worker` against the run directory on a shared filesystem; the driver follows the
//!   array with `squeue`.
//!
//! A worker writes the candidate's files itself (record last), so the driver only has to look
//! for `record.json`. A task whose worker fails is run once more; failing again it is recorded
//! as failed (never lost, never silently skipped). A resumed run dispatches only the tasks
//! without a record, after waiting for an array a killed driver left in the queue.

use super::*;
use std::process::{Child, Command, Stdio};

/// Where candidates are trained.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Executor {
    #[default]
    Inline,
    Local {
        jobs: usize,
    },
    Slurm(SlurmOptions),
}

/// How the driver submits to Slurm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Further `sbatch` arguments, e.g. `--cpus-per-task=4`, `--time=30`.
    pub sbatch_args: Vec<String>,
    /// How often the queue is polled.
    pub poll: Duration,
}

/// What became of a dispatched task: `None` when it was not started (time budget).
pub type Outcome = Option<std::result::Result<(), String>>;

/// The `nas` binary workers run.
fn worker_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the nas executable to start workers with")
}

fn done(run: &Run, id: &str) -> bool {
    run.files().candidate(id).record().is_file()
}

/// The last lines a failed worker wrote, for the failure record.
fn worker_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let t = crate::util::tail_lines(text.trim_end(), 3);
    if t.is_empty() {
        "no output".to_string()
    } else {
        t
    }
}

/// Train `tasks` in `jobs` local worker processes; `stop` is asked before each start.
pub fn run_local(
    run: &Run,
    jobs: usize,
    tasks: &[&Task],
    stop: &dyn Fn() -> bool,
    on_done: &mut dyn FnMut(),
) -> Result<Vec<Outcome>> {
    let exe = worker_exe()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs.max(1)).max(1);
    let mut outcomes: Vec<Outcome> = vec![None; tasks.len()];
    let mut queue: std::collections::VecDeque<(usize, usize)> =
        (0..tasks.len()).map(|i| (i, 0)).collect();
    let mut running: Vec<(usize, usize, Child)> = Vec::new();
    let mut stopped = false;
    loop {
        while running.len() < jobs.max(1) && !stopped {
            let Some((i, attempt)) = queue.pop_front() else {
                break;
            };
            if attempt == 0 && stop() {
                stopped = true;
                queue.clear();
                break;
            }
            let id = &tasks[i].id;
            let log = run.files().candidate(id).worker_log();
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("cannot open {}", log.display()))?;
            let child = Command::new(&exe)
                .args(["worker", "--run"])
                .arg(&run.dir)
                .args(["--candidate", id])
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("cannot start a worker ({})", exe.display()))?;
            running.push((i, attempt, child));
        }
        if running.is_empty() {
            break;
        }
        let mut k = 0;
        while k < running.len() {
            let status = running[k].2.try_wait()?;
            let Some(status) = status else {
                k += 1;
                continue;
            };
            let (i, attempt, _) = running.swap_remove(k);
            let id = &tasks[i].id;
            if status.success() && done(run, id) {
                outcomes[i] = Some(Ok(()));
                on_done();
            } else if attempt == 0 {
                queue.push_back((i, 1));
            } else {
                outcomes[i] = Some(Err(format!(
                    "its worker failed twice ({status}): {}",
                    worker_tail(&run.files().candidate(id).worker_log())
                )));
                on_done();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(outcomes)
}

/// The Slurm job name of every array of a run (from its absolute path), so that a resumed
/// driver finds the arrays a killed one left in the queue, even one whose submission the kill
/// interrupted.
fn job_name(run: &Run) -> Result<String> {
    let abs = std::path::absolute(&run.dir)?;
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let h = super::layout::Fnv::default()
        .write(abs.as_os_str().as_encoded_bytes())
        .finish();
    Ok(format!("nas-{:012x}", h & 0xffff_ffff_ffff))
}

fn slurm_dir(run: &Run) -> PathBuf {
    run.files().slurm()
}

fn command_output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {what} ({e}): is Slurm installed and this a submit host? \
             (Debian: apt-get install slurm-wlm)"
        )
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether jobs named `name` still have tasks in the queue.
fn in_queue(name: &str) -> Result<bool> {
    let out = Command::new("squeue")
        .args(["-h", "-n", name, "-o", "%i"])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run squeue ({e}): is Slurm installed here?"))?;
    ensure!(
        out.status.success(),
        "squeue failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
}

fn wait_for(name: &str, poll: Duration) -> Result<()> {
    while in_queue(name)? {
        std::thread::sleep(poll);
    }
    Ok(())
}

/// Submit the tasks as one array and wait for it; returns the job id.
fn submit(
    run: &Run,
    opts: &SlurmOptions,
    ids: &[&str],
    attempt: usize,
    name: &str,
) -> Result<String> {
    let dir = slurm_dir(run);
    std::fs::create_dir_all(&dir)?;
    let abs = std::path::absolute(&run.dir)?;
    let list = dir.join(format!("{}-a{attempt}.tasks", ids[0]));
    crate::util::write_atomic(&list, format!("{}\n", ids.join("\n")).as_bytes())?;
    let exe = worker_exe()?;
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable")
        .arg(format!("--array=0-{}", ids.len() - 1))
        .arg(format!("--job-name={name}"))
        .arg(format!(
            "--output={}/%A_%a.out",
            Layout::new(&abs).slurm().display()
        ));
    if let Some(p) = &opts.partition {
        cmd.arg(format!("--partition={p}"));
    }
    cmd.args(&opts.sbatch_args);
    cmd.arg("--wrap").arg(format!(
        "exec '{}' worker --run '{}' --task-list '{}'",
        exe.display(),
        abs.display(),
        std::path::absolute(&list)?.display()
    ));
    let out = command_output(&mut cmd, "sbatch")?;
    let job = out.split(';').next().unwrap_or("").to_string();
    ensure!(
        !job.is_empty() && job.chars().all(|c| c.is_ascii_digit()),
        "sbatch answered {out:?}, not a job id"
    );
    Ok(job)
}

/// Train `tasks` as Slurm job arrays: one array, then one more for the tasks whose worker
/// failed, then failures are recorded.
pub fn run_slurm(
    run: &Run,
    opts: &SlurmOptions,
    tasks: &[&Task],
    stop: &dyn Fn() -> bool,
    on_done: &mut dyn FnMut(),
) -> Result<Vec<Outcome>> {
    let poll = if opts.poll.is_zero() {
        Duration::from_secs(1)
    } else {
        opts.poll
    };
    // A driver killed mid-array left it in the queue: let it finish first, so that no
    // candidate is trained twice.
    let name = job_name(run)?;
    wait_for(&name, poll)?;
    let mut outcomes: Vec<Outcome> = vec![None; tasks.len()];
    if stop() {
        return Ok(outcomes);
    }
    for attempt in 0..2 {
        let missing: Vec<usize> = (0..tasks.len())
            .filter(|&i| outcomes[i].is_none() && !done(run, &tasks[i].id))
            .collect();
        for i in 0..tasks.len() {
            if outcomes[i].is_none() && done(run, &tasks[i].id) {
                outcomes[i] = Some(Ok(()));
                on_done();
            }
        }
        if missing.is_empty() {
            break;
        }
        let ids: Vec<&str> = missing.iter().map(|&i| tasks[i].id.as_str()).collect();
        let job = submit(run, opts, &ids, attempt, &name)?;
        wait_for(&name, poll)?;
        if attempt == 1 {
            for &i in &missing {
                if done(run, &tasks[i].id) {
                    outcomes[i] = Some(Ok(()));
                } else {
                    let out = slurm_dir(run).join(format!(
                        "{job}_{}.out",
                        ids.iter().position(|&x| x == tasks[i].id).unwrap_or(0)
                    ));
                    outcomes[i] = Some(Err(format!(
                        "its Slurm task failed twice (job {job}): {}",
                        worker_tail(&out)
                    )));
                }
                on_done();
            }
        }
    }
    Ok(outcomes)
}

/// `nas worker --task-list FILE`: the candidate of this Slurm array task.
pub fn task_from_list(list: &Path) -> Result<String> {
    let index: usize = std::env::var("SLURM_ARRAY_TASK_ID")
        .context("SLURM_ARRAY_TASK_ID is not set: --task-list is for Slurm array tasks")?
        .parse()
        .context("SLURM_ARRAY_TASK_ID is not a number")?;
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("cannot read the task list {}", list.display()))?;
    text.lines()
        .nth(index)
        .map(str::to_string)
        .with_context(|| format!("{} has no task {index}", list.display()))
}
