//! `nave-lab status checkpoints/X/`: where a study stands, run by run (see
//! `crate::status`).
use crate::cli::StatusArgs;
use crate::status::StudyStatus;

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let study = StudyStatus::read(&args.dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&study.to_json())?);
    } else {
        for line in study.lines() {
            println!("{line}");
        }
    }
    Ok(())
}
