//! Hostile input at the boundaries where files and names enter: names that
//! would reach a job script, checkpoints that attack the reader, run
//! folders waited on for ever. (Archives and the weights cache are in
//! tests/fetch.rs, beside their local server; the fuzz harness in
//! tests/fuzz.rs.) Every case ends in an error that names its source, exit
//! status 1, and nothing written.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{nave_lab, refused, scratch};

const GOOD: &str = "name: good\n\
    dataset:\n  kind: synthetic\n  image_size: 32\n  synthetic: {seed: 0, train: 16, test: 16}\n\
    model:\n  arch: resnet18\n  width: 4\n\
    train:\n  epochs: 1\n  batch_size: 16\n  optimizer: {kind: sgd, lr: 0.05}\n\
    watermark: {size: 0.2, target_class: NORMAL}\n\
    grid:\n  augment: [false]\n  watermark: [false]\n  seed: [0]\n";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// `train --slurm --dry-run` in `dir` with `args`.
fn slurm_dry_run(dir: &Path, exp: &Path, args: &[&str]) -> Output {
    nave_lab()
        .current_dir(dir)
        .args(["train"])
        .arg(exp)
        .args(["--checkpoints", "ck", "--slurm", "--dry-run"])
        .args(args)
        .output()
        .unwrap()
}

/// An experiment name, a `--set name=`, a Slurm option or a run.yaml id
/// with a newline (or any character outside [A-Za-z0-9._-]) is refused,
/// naming where it came from; before, the newline ended the `#SBATCH`
/// line and bash ran what followed.
#[test]
fn names_and_options_with_shell_syntax_never_reach_a_job_script() {
    let dir = scratch("hostile_names");
    let evil = dir.join("evil.yaml");
    std::fs::write(
        &evil,
        GOOD.replace("name: good", "name: \"x\\ntouch PWNED #\""),
    )
    .unwrap();
    let err = refused(&slurm_dry_run(&dir, &evil, &[]));
    assert!(
        err.contains("evil.yaml, line 1")
            && err.contains("newline")
            && err.contains("letters, digits"),
        "{err}"
    );

    let good = dir.join("good.yaml");
    std::fs::write(&good, GOOD).unwrap();
    let err = refused(&slurm_dry_run(
        &dir,
        &good,
        &["--set", "name=\"y\\ntouch PWNED\""],
    ));
    assert!(
        err.contains("--set name=") && err.contains("newline"),
        "{err}"
    );
    let err = refused(&slurm_dry_run(&dir, &good, &["--set", "name=a;b"]));
    assert!(err.contains("';'") && err.contains("character 2"), "{err}");

    for (flag, value) in [
        ("--partition", "gpu\ntouch PWNED"),
        ("--mem", "16G\ntouch PWNED"),
        ("--sbatch-arg", "--qos=high\ntouch PWNED"),
    ] {
        let arg = format!("{flag}={value}");
        let err = refused(&slurm_dry_run(&dir, &good, &[&arg]));
        assert!(
            err.contains(flag) && err.contains("newline"),
            "{flag}: {err}"
        );
    }

    // A run.yaml from elsewhere, read by `audit --slurm`.
    let exp = nave_lab::config::Experiment::load(&good, &[]).unwrap();
    let mut run = exp.runs().remove(0);
    run.id = "r\ntouch PWNED".into();
    let folder = dir.join("ck/good/r");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("run.yaml"),
        yaml_serde::to_string(&run).unwrap(),
    )
    .unwrap();
    let o = nave_lab()
        .current_dir(&dir)
        .args(["audit", "ck/good", "--slurm", "--dry-run"])
        .output()
        .unwrap();
    let err = refused(&o);
    assert!(
        err.contains("run.yaml") && err.contains("id") && err.contains("newline"),
        "{err}"
    );

    assert!(!dir.join("PWNED").exists());
    assert_eq!(files_under(&dir.join("ck")), [folder.join("run.yaml")]);

    // A good name still gives a script whose directives sbatch reads whole.
    let o = slurm_dry_run(&dir, &good, &["--partition", "gpu"]);
    common::assert_ok(&o);
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(
        script.contains("#SBATCH --job-name=nave-train-good\n")
            && script.contains("#SBATCH --partition=gpu\n"),
        "{script}"
    );
}

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus/pth")
        .join(name)
}

/// A torch.save zip (stored) holding `pickle` and one storage.
fn pth_file(path: &Path, pickle: &[u8]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/data/0", stored).unwrap();
    zip.write_all(&[0u8; 24]).unwrap();
    zip.finish().unwrap();
}

/// Checkpoints built to attack the reader (tests/python/make_hostile_pth.py
/// wrote them; a 5 MB nest of tuples is written here): each is an error
/// naming the file and what is wrong with it. Before, they took 4-631 GB,
/// overflowed the stack (SIGABRT) or panicked (exit 101).
#[test]
fn hostile_checkpoints_are_errors_naming_the_file() {
    let dir = scratch("hostile_pth");
    let image = dir.join("x.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([90, 90, 90]))
        .save(&image)
        .unwrap();
    let deep = dir.join("deep5mb.pth");
    let mut nest = b"\x80\x02)".to_vec();
    nest.extend(std::iter::repeat_n(0x85u8, 5 << 20));
    nest.push(b'.');
    pth_file(&deep, &nest);
    let cases = [
        (
            corpus("stride0.pth"),
            "rebuilt from storages take more than",
        ),
        (corpus("memo_bomb.pth"), "memo copies more than"),
        (corpus("deep.pth"), "nested deeper than 64"),
        (deep, "nested deeper than 64"),
        (
            corpus("out_of_storage.pth"),
            "reaching element 9 of a storage of 6",
        ),
        (corpus("neg_stride.pth"), "negative stride"),
        (corpus("neg_offset.pth"), "negative storage offset"),
        (corpus("two_args.pth"), "got 2 arguments"),
        (corpus("overflow.pth"), "overflow 64 bits"),
    ];
    for (file, why) in cases {
        let out = dir.join("out.png");
        let o = nave_lab()
            .args(["-q", "explain", "--arch", "resnet18", "--weights"])
            .arg(&file)
            .arg("--image")
            .arg(&image)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let err = refused(&o);
        assert!(
            err.contains(&file.display().to_string()) && err.contains(why),
            "{}: expected '{why}' in\n{err}",
            file.display()
        );
        assert!(!out.exists(), "{}", file.display());
    }
    // The reader still reads what torch.save writes, also with zip64 extra
    // fields in the entries' headers (the zip crate reads the container).
    for file in ["valid.pth", "valid_zip64.pth"] {
        let tensors = nave_lab::models::pth::read(&corpus(file)).unwrap();
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w", "b", "n/x"], "{file}");
        assert_eq!(
            Vec::<f32>::try_from(tensors[0].1.flatten(0, -1)).unwrap(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "{file}"
        );
    }
}

/// `train --wait=1` gives up on a run another process holds after a
/// second (before, `--wait` waited for ever), and `NAVE_LAB_LOCKS=<folder>`
/// keeps the locks there, not in the run folder.
#[test]
fn waiting_has_a_limit_and_locks_can_live_elsewhere() {
    let dir = scratch("hostile_locks");
    let exp = dir.join("good.yaml");
    std::fs::write(&exp, GOOD).unwrap();
    let ck = dir.join("ck");
    let run = ck.join("good/resnet18-aug0-wm0-s0");
    let held = nave_lab::lock::Lock::try_acquire(&run.join(".lock"))
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    let o = nave_lab()
        .arg("train")
        .arg(&exp)
        .arg("--checkpoints")
        .arg(&ck)
        .arg("--wait=1")
        .output()
        .unwrap();
    common::assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("still held after 1s") && started.elapsed().as_secs() < 60,
        "{err}"
    );
    assert!(!run.join("COMPLETE").exists());
    drop(held);

    let locks = dir.join("locks");
    let o = nave_lab()
        .env("NAVE_LAB_LOCKS", &locks)
        .args(["-q", "train"])
        .arg(&exp)
        .arg("--checkpoints")
        .arg(&ck)
        .output()
        .unwrap();
    common::assert_ok(&o);
    assert!(run.join("COMPLETE").is_file());
    let kept: Vec<String> = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter()
            .any(|n| n.starts_with("resnet18-aug0-wm0-s0-") && n.ends_with(".lock")),
        "{kept:?}"
    );
}
