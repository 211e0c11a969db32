//! Shrinking a failed random run: the nemesis's schedule is cut into units (a fault with its
//! recovery), and runs of ever smaller subsets (delta debugging: halves, then quarters, down
//! to single units) keep whatever still fails the same way; then the kept units are packed
//! as early and as short as the nemesis allows. What is left is the smallest schedule found
//! that still fails, written as a scenario of plain steps a user can keep as a regression
//! test.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{NemesisSpec, Scenario, ScenarioError, ScenarioSpec, Step, load_results, new_run_dir};
use crate::run::RunOptions;
use hadrill_model::{Fault, Results, Verdict, verdict_word};

/// One fault and the steps that undo it (none for a restart).
pub type Unit = Vec<Step>;

/// The steps cut into units: a step whose fault is a recovery (start, resume, heal) belongs
/// to the fault before it.
pub fn units(steps: &[Step]) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    for step in steps {
        let recovery = matches!(
            step.fault,
            Some(Fault::Start { .. } | Fault::Resume { .. } | Fault::Heal)
        );
        match out.last_mut() {
            Some(unit) if recovery => unit.push(step.clone()),
            _ => out.push(vec![step.clone()]),
        }
    }
    out
}

/// The smallest subset of `units` (in their order) for which `fails` holds, by delta
/// debugging over complements: remove a chunk, keep the removal if it still fails, and halve
/// the chunk size when no chunk can go. `fails(all)` is taken as given. Each call of `fails`
/// is one run.
pub async fn minimise<T: Clone, F, Fut>(units: Vec<T>, mut fails: F) -> Vec<T>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut current = units;
    let mut chunk = current.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut start = 0;
        while start < current.len() && current.len() > 1 {
            let end = (start + chunk).min(current.len());
            let candidate: Vec<T> = current[..start]
                .iter()
                .chain(&current[end..])
                .cloned()
                .collect();
            if !candidate.is_empty() && fails(candidate.clone()).await {
                current = candidate;
                removed = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed {
            return current;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
    }
}

/// The units re-timed as early and as short as the nemesis allows: each fault its shortest
/// quiet after the previous unit, each recovery its shortest duration after its fault.
pub fn packed(units: &[Unit], nemesis: &NemesisSpec, start: Duration) -> Vec<Step> {
    let mut t = start;
    let mut steps = Vec::new();
    for unit in units {
        t += nemesis.interval.min;
        for (i, step) in unit.iter().enumerate() {
            if i > 0 {
                t += nemesis.duration.min;
            }
            steps.push(Step {
                at: Some(t),
                after: None,
                ..step.clone()
            });
        }
    }
    steps
}

/// What shrinking found.
pub struct Shrunk {
    /// The scenario file written: the smallest schedule that still fails.
    pub file: PathBuf,
    pub faults_before: usize,
    pub faults_after: usize,
    /// Each run tried: its faults, verdict and run directory.
    pub tries: Vec<(usize, Verdict, PathBuf)>,
    pub wall: Duration,
}

fn faults(steps: &[Step]) -> usize {
    steps.iter().filter(|s| s.fault.is_some()).count()
}

/// The checks that failed in a run, bar those it was meant to fail.
fn failing(results: &Results) -> Vec<String> {
    results
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail && !c.expected_to_fail)
        .map(|c| c.check.clone())
        .collect()
}

/// Shrinks the failed random run in `run_dir`: its scenario is drawn again from the run's
/// seed, and candidates run until the smallest schedule that fails one of the same checks is
/// found. It is written beside the run as `shrunk.toml`.
pub async fn shrink(
    root: &Path,
    run_dir: &Path,
    options: &RunOptions,
) -> Result<Shrunk, ScenarioError> {
    let wall = Instant::now();
    let saved = load_results(run_dir)?;
    let refuse = |why: String| ScenarioError::Shrink {
        run: run_dir.to_path_buf(),
        why,
    };
    let (Some(seed), Some(file)) = (saved.seed, saved.scenario_file.clone()) else {
        return Err(refuse(
            "it is not a run of a scenario file with `[nemesis]`: only a random schedule is shrunk"
                .into(),
        ));
    };
    let signature = failing(&saved);
    if saved.verdict != Verdict::Fail || signature.is_empty() {
        return Err(refuse(format!(
            "its verdict is {} with no failed check: there is nothing to shrink",
            verdict_word(saved.verdict)
        )));
    }
    let on = saved
        .scenario
        .rsplit_once(super::VARIANT_SEPARATOR)
        .map(|(_, t)| t);
    let text = std::fs::read_to_string(&file).map_err(|source| ScenarioError::Read {
        path: file.clone(),
        source,
    })?;
    let mut original = Scenario::parse(root, file.clone(), text, on)?;
    original.reseed(seed);
    let nemesis = original
        .spec
        .nemesis
        .clone()
        .expect("a seed implies a nemesis");
    let all = units(&original.spec.steps);
    let faults_before = faults(&original.spec.steps);
    let stem = file
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    // Each candidate is a scenario of plain steps beside the original, so that its topology
    // is found as the original's is.
    let spec_with = |steps: Vec<Step>| ScenarioSpec {
        nemesis: None,
        steps,
        ..original.spec.clone()
    };
    let mut attempt = 0;
    let mut run = |steps: Vec<Step>| {
        attempt += 1;
        let spec = spec_with(steps);
        let path = file.with_file_name(format!("{stem}-shrink-{attempt}.toml"));
        let options = options.clone();
        let signature = signature.clone();
        let root = root.to_path_buf();
        async move {
            let text = toml::to_string(&spec).map_err(|e| ScenarioError::Serialise {
                drill: path.display().to_string(),
                message: e.to_string(),
            })?;
            let scenario = Scenario::parse(&root, path, text, None)?;
            let mut options = options;
            options.run_dir = Some(new_run_dir(&options.runs_dir, &scenario.name));
            let results = scenario.run(&options).await?;
            let fails = results.verdict == Verdict::Fail
                && failing(&results).iter().any(|c| signature.contains(c));
            tracing::info!(
                "shrink: {} fault(s): {} ({})",
                faults(&spec.steps),
                verdict_word(results.verdict),
                if fails {
                    "still fails"
                } else {
                    "passes or fails otherwise"
                }
            );
            Ok::<_, ScenarioError>((fails, results.verdict, results.run_dir))
        }
    };
    // Each candidate is one run; a candidate that cannot run at all stops the shrink.
    let tried = std::cell::RefCell::new(Vec::new());
    let errors = std::cell::RefCell::new(Vec::new());
    let kept = minimise(all, |candidate: Vec<Unit>| {
        let steps: Vec<Step> = candidate.concat();
        let n = faults(&steps);
        let fut = run(steps);
        let (tried, errors) = (&tried, &errors);
        async move {
            if !errors.borrow().is_empty() {
                return false;
            }
            match fut.await {
                Ok((fails, verdict, dir)) => {
                    tried.borrow_mut().push((n, verdict, dir));
                    fails
                }
                Err(e) => {
                    errors.borrow_mut().push(e.to_string());
                    false
                }
            }
        }
    })
    .await;
    if let Some(e) = errors.into_inner().first() {
        return Err(refuse(format!("a candidate could not run: {e}")));
    }
    let mut tries = tried.into_inner();
    let mut steps: Vec<Step> = kept.concat();
    let packed = packed(&kept, &nemesis, original.spec.warmup);
    let (fails, verdict, dir) = run(packed.clone()).await?;
    tries.push((faults(&packed), verdict, dir));
    if fails {
        steps = packed;
    }
    let out = run_dir.join("shrunk.toml");
    let header = format!(
        "# Shrunk by `hadrill shrink` from {} (seed {seed}, {faults_before} faults): the smallest\n\
         # schedule found that still fails {}. Keep it as a regression test.\n",
        saved.scenario,
        signature.join(", ")
    );
    let mut spec = spec_with(steps.clone());
    if spec.topology.get_ref().ends_with(".toml") {
        // The file lives in the run directory: a topology named by its path is named whole.
        let path = &original.topology.path;
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        spec.topology = toml::Spanned::new(0..0, path.display().to_string());
    }
    let body = toml::to_string(&spec).map_err(|e| ScenarioError::Serialise {
        drill: out.display().to_string(),
        message: e.to_string(),
    })?;
    let write = |text: String| {
        std::fs::write(&out, text).map_err(|e| ScenarioError::Evidence {
            path: out.clone(),
            message: e.to_string(),
        })
    };
    write(header + &body)?;
    Ok(Shrunk {
        file: out,
        faults_before,
        faults_after: faults(&steps),
        tries,
        wall: wall.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    async fn shrunk(n: usize, fails: impl Fn(&[usize]) -> bool) -> (Vec<usize>, usize) {
        let runs = Cell::new(0);
        let kept = minimise((0..n).collect(), |c: Vec<usize>| {
            runs.set(runs.get() + 1);
            let f = fails(&c);
            async move { f }
        })
        .await;
        (kept, runs.get())
    }

    #[tokio::test]
    async fn one_culprit_among_many_is_found_in_few_runs() {
        let (kept, runs) = shrunk(10, |c| c.contains(&6)).await;
        assert_eq!(kept, [6]);
        assert!(runs <= 10, "{runs} runs");
    }

    #[tokio::test]
    async fn two_culprits_together_are_both_kept() {
        let (kept, _) = shrunk(9, |c| c.contains(&1) && c.contains(&7)).await;
        assert_eq!(kept, [1, 7]);
        // Nothing smaller fails: nothing is dropped.
        let (kept, _) = shrunk(3, |c| c.len() == 3).await;
        assert_eq!(kept, [0, 1, 2]);
    }

    #[test]
    fn a_recovery_belongs_to_the_fault_before_it_and_packing_keeps_the_shortest_spans() {
        use super::super::Between;
        let s = |f: Fault| Step::at(Duration::from_secs(9)).fault(f);
        let steps = [
            s(Fault::kill(["a"])),
            s(Fault::start(["a"])),
            s(Fault::restart(["b"])),
            s(Fault::isolate(["a"])),
            s(Fault::Heal),
        ];
        let u = units(&steps);
        assert_eq!(u.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 2]);
        let nemesis = NemesisSpec {
            faults: Vec::new(),
            targets: Vec::new(),
            interval: Between {
                min: Duration::from_secs(3),
                max: Duration::from_secs(6),
            },
            duration: Between {
                min: Duration::from_secs(2),
                max: Duration::from_secs(5),
            },
            total: Duration::from_secs(60),
            seed: None,
        };
        let at: Vec<u64> = packed(&u, &nemesis, Duration::from_secs(3))
            .iter()
            .map(|s| s.at.unwrap().as_secs())
            .collect();
        assert_eq!(at, [6, 8, 11, 14, 16]);
    }
}
