//! Each `scenarios/*.toml` is one test, named after its file: `cargo nextest run -E
//! 'test(kill-active-app)'`. A scenario passes only when every check passes; `unknown` fails
//! the test too, since a sign-off needs proof.

use std::path::Path;

use hadrill::checks::Verdict;
use hadrill::scenario::{self, Scenario};
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
            Trial::test(name.clone(), move || run(&root, &name)).with_kind("scenario")
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn run(root: &Path, name: &str) -> Result<(), Failed> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let scenario =
            Scenario::load(root, name).map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        let results = scenario
            .run(&RunOptions::new(root))
            .await
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        println!("{}", results.summary());
        match results.verdict {
            Verdict::Pass => Ok(()),
            _ => Err(Failed::from(results.summary())),
        }
    })
}
