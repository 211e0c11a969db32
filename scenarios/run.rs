//! Each `scenarios/*.toml` is one test, named after its file: `cargo nextest run -E
//! 'test(kill-active-app)'`; `[scenario-alone] …` when it must have the machine to itself
//! (`hadrill::scenario::weight`). A scenario passes only when every check passes; `unknown`
//! fails the test too, since a sign-off needs proof. Each run is also judged again from its
//! saved files (`hadrill check`), which must give the same verdicts.

use std::path::Path;

use hadrill::model::Verdict;
use hadrill::scenario;
use hadrill::{RunOptions, project_root};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(project_root, Path::to_path_buf);
    let trials = scenario::available(&root)
        .into_iter()
        .map(|name| {
            let root = root.clone();
            // Nextest runs a run that needs the machine to itself alone (.config/nextest.toml).
            let kind = match scenario::weight(&root, &name, None) {
                1 => "scenario",
                _ => "scenario-alone",
            };
            Trial::test(name.clone(), move || run(&root, &name)).with_kind(kind)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn run(root: &Path, name: &str) -> Result<(), Failed> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let results = scenario::run_in_suite(
            root,
            name,
            None,
            None,
            &RunOptions::new(root).with_signal_handler(),
        )
        .await;
        println!("{}", results.summary());
        // The verdict must follow from the saved evidence alone: judge it again, offline.
        let recheck = scenario::recheck(&results.run_dir)
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        if !recheck.differences.is_empty() {
            return Err(Failed::from(format!(
                "re-checking {} from its files gives other verdicts:\n{}",
                results.run_dir.display(),
                recheck.differences.join("\n")
            )));
        }
        match results.verdict {
            Verdict::Pass => Ok(()),
            _ => Err(Failed::from(results.summary())),
        }
    })
}
