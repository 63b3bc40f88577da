//! Command-line definitions (clap derive) and nothing else: `main.rs` turns
//! them into library calls.
use clap::{Args, Parser, Subcommand};

use crate::device::DeviceRequest;
use crate::ui::at_least_one;

#[derive(Debug, Parser)]
#[command(
    name = "nave-lab",
    version,
    about = "Train vision models with and without shortcuts, and audit what they learned with NAVE",
    propagate_version = true
)]
pub struct Cli {
    /// Device for models and tensors: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceRequest,

    /// More output (-v: details, -vv: debugging).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors and results; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report versions, libtorch's location, CPU threads, CUDA and GPUs.
    Doctor(DoctorArgs),
    /// Train every run of an experiment's grid (resumes unfinished runs, skips complete ones).
    Train(TrainArgs),
    /// Where a study stands: every run as done, running, pending, failed, stopped or not started.
    Status(StatusArgs),
    /// Run NAVE on every finished run of an experiment and measure the watermark shortcut; or, with --weights, audit a model trained elsewhere from its files.
    Audit(AuditArgs),
    /// Fine-tune each flagged run with the shortcut its verdict found
    /// neutralised (beside the original: <id>-revised-<method>), then audit again.
    Revise(ReviseArgs),
    /// Rebuild the HTML report of an audit (reports/<experiment>/index.html) from its audit.json.
    Report(ReportArgs),
    /// NAVE on one image: overlay, average-colour image and label map.
    Explain(ExplainArgs),
    /// Object localisation with NAVE segments on VOC07/VOC12/COCO20k (the paper's Tables 1-7).
    Localize(LocalizeArgs),
    /// Inspect and generate datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure speed; prints JSON.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write the built-in synthetic set in the Chest-X-Ray folder layout.
    Synth(SynthArgs),
    /// Counts per split and class, image sizes and colour modes.
    Stats(DatasetArgs),
    /// A PNG grid of samples as the model sees them: clean, watermarked, augmented.
    Show(ShowArgs),
    /// Download a data set from its public source (or a mirror), check it and
    /// unpack it into the layout dataset.root expects.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    pub dataset: crate::fetch::datasets::FetchableDataset,
    /// Folder the archive is downloaded to and unpacked under.
    #[arg(long, default_value = "data")]
    pub root: std::path::PathBuf,
    #[command(flatten)]
    pub source: DownloadArgs,
    /// The most the archive may unpack to (10G, 500M or bytes); default four
    /// times the archive's size, at least 64M.
    #[arg(long, value_parser = parse_size)]
    pub max_unpacked: Option<u64>,
}

/// Where downloads come from.
#[derive(Debug, Args, Clone, Default)]
pub struct DownloadArgs {
    /// A server that replaces the public hosts, serving each file under its
    /// own name (default: $NAVE_LAB_MIRROR).
    #[arg(long)]
    pub mirror: Option<String>,
    /// The SHA-256 the file must have instead of the published checksum (a
    /// copy your lab repackaged).
    #[arg(long, value_parser = sha256_hex)]
    pub sha256: Option<String>,
}

impl DownloadArgs {
    pub fn options(&self) -> crate::fetch::FetchOptions {
        crate::fetch::FetchOptions::new(self.mirror.clone(), self.sha256.clone())
    }
}

/// A whole number with one of `units` after it (`30m`, `10G`); `what`
/// names the quantity in the error.
fn quantity(text: &str, units: &[(&str, u64)], what: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    units
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
        .and_then(|(_, scale)| digits.parse::<u64>().ok()?.checked_mul(*scale))
        .ok_or_else(|| {
            let names: Vec<&str> = units
                .iter()
                .map(|(u, _)| *u)
                .filter(|u| !u.is_empty())
                .collect();
            format!(
                "'{text}' is not {what}: a whole number, alone or with {}",
                names.join(", ")
            )
        })
}

/// `90`, `90s`, `30m`, `2h`: a time limit.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let units = [("", 1), ("s", 1), ("m", 60), ("h", 3600)];
    quantity(text, &units, "a time").map(std::time::Duration::from_secs)
}

/// `10G`, `500M`, `64K` or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let units = [
        ("", 1),
        ("K", 1 << 10),
        ("M", 1 << 20),
        ("G", 1 << 30),
        ("T", 1 << 40),
    ];
    quantity(text, &units, "a size")
}

#[cfg(test)]
mod quantity_tests {
    use super::*;

    #[test]
    fn times_and_sizes() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        for bad in ["", "m", "1.5h", "-3", "10 parsecs", "99999999999999999999T"] {
            assert!(
                parse_duration(bad).is_err() && parse_size(bad).is_err(),
                "{bad}"
            );
        }
    }
}

fn sha256_hex(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(text.to_lowercase())
    } else {
        Err("a SHA-256 is 64 hexadecimal digits".to_string())
    }
}

#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// stl10, chest-xray (any image-class folders) or synthetic.
    #[arg(long)]
    pub dataset: crate::data::DatasetKind,
    /// stl10: the folder containing stl10_binary/; chest-xray: the chest_xray folder.
    #[arg(long, required_if_eq_any = [("dataset", "stl10"), ("dataset", "chest-xray")])]
    pub root: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Folder to create (must not exist).
    #[arg(long)]
    pub out: std::path::PathBuf,
    #[arg(long, default_value_t = 600)]
    pub train: usize,
    #[arg(long, default_value_t = 200)]
    pub test: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// stl10, chest-xray (any image-class folders) or synthetic.
    #[arg(long, required_unless_present = "experiment")]
    pub dataset: Option<crate::data::DatasetKind>,
    /// stl10: the folder containing stl10_binary/; chest-xray: the chest_xray folder.
    #[arg(long, required_if_eq_any = [("dataset", "stl10"), ("dataset", "chest-xray")])]
    pub root: Option<std::path::PathBuf>,
    /// Show every artefact family of this experiment: a clean row, then one
    /// row per distinct watermark (and dataset) of its runs, at its image size.
    #[arg(long, conflicts_with_all = ["dataset", "root", "image_size"])]
    pub experiment: Option<std::path::PathBuf>,
    /// Output PNG.
    #[arg(long, short)]
    pub out: std::path::PathBuf,
    /// Side the images are resized to, as in an experiment's dataset.image_size.
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long, default_value_t = 96)]
    pub image_size: i64,
    /// Number of samples (columns).
    #[arg(value_parser = at_least_one, long, default_value_t = 8)]
    pub count: usize,
    /// Seed for the sample choice, watermark positions and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Split to sample from.
    #[arg(long, default_value = "train")]
    pub split: String,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Loader + augmentation throughput (images/s) on the chosen device.
    Data(crate::bench::data::BenchDataArgs),
    /// k-means engines on a real NAVE feature matrix: time, iterations, inertia, peak memory.
    Kmeans(crate::bench::kmeans::BenchKmeansArgs),
    /// Training throughput (images/s) of one architecture, for comparison with PyTorch.
    Train(crate::bench::train::BenchTrainArgs),
    /// The blind shortcut detector and the occlusion baseline scored over a
    /// zoo of finished runs: AUROC, AUPR, FPR at 95% TPR, localisation,
    /// Spearman, per family and per architecture.
    Detect(BenchDetectArgs),
    /// What `nave-lab revise` did over a zoo, from the audit that took the
    /// revisions in: per family and method, the gap before and after, clean
    /// accuracy against runs trained without the artefact, flags left.
    Revise(crate::bench::revise::BenchReviseArgs),
}

#[derive(Debug, Args)]
pub struct BenchDetectArgs {
    /// An experiment's checkpoint folder (e.g. checkpoints/zoo/).
    pub dir: std::path::PathBuf,
    /// Probe images per run for the localisation.
    #[arg(value_parser = at_least_one, long, default_value_t = 20)]
    pub probes: usize,
    /// The pre-registered split: tuning seeds and held-out families
    /// (default experiments/zoo-splits.yaml, refused if changed since it was
    /// registered unless --exploratory).
    #[arg(long)]
    pub splits: Option<std::path::PathBuf>,
    /// Seeds the threshold is chosen on, instead of the registered ones
    /// (needs --exploratory).
    #[arg(long, value_delimiter = ',')]
    pub tune_seeds: Option<Vec<u64>>,
    /// Families held out from all tuning, instead of the registered ones
    /// (needs --exploratory).
    #[arg(long, value_delimiter = ',')]
    pub held_out: Option<Vec<String>>,
    /// Score on a split that is not the registered one; every figure is then
    /// marked exploratory.
    #[arg(long)]
    pub exploratory: bool,
    /// Highest false-positive rate the threshold may give on the tuning runs.
    #[arg(long, default_value_t = 0.05)]
    pub max_fpr: f64,
    /// Only the runs of these families (default: every run).
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// Only the runs of these seeds (default: every seed).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Skip the occlusion baseline (it costs about twice the detector).
    #[arg(long)]
    pub no_baseline: bool,
    /// Runs measured at once, each with an equal share of libtorch's threads
    /// (the scores are the same; part of the detector runs on one core, so
    /// two runs at once keep two cores busier: 9% less time on zoo v2 here).
    #[arg(long, value_parser = at_least_one, default_value_t = 1)]
    pub jobs: usize,
    /// Also write the JSON (with every run's scores) here.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The experiment YAML file.
    pub experiment: std::path::PathBuf,
    /// Override a field: --set train.epochs=3 (repeatable; values are YAML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Print the runs of the grid and exit.
    #[arg(long)]
    pub list: bool,
    /// Train only the run with this id (see --list).
    #[arg(long, conflicts_with = "index")]
    pub run: Option<String>,
    /// Train only the run at this position of --list (0-based), for schedulers that start one process per run.
    #[arg(long)]
    pub index: Option<usize>,
    /// Where run folders go: <checkpoints>/<experiment name>/<run id>/.
    #[arg(long, default_value = "checkpoints")]
    pub checkpoints: std::path::PathBuf,
    /// Wait for runs another process is training (default: skip them and
    /// say so); --wait=30m gives up on a run after that long (s, m, h).
    #[arg(long, conflicts_with = "parallel", num_args = 0..=1, require_equals = true, value_name = "LIMIT", value_parser = parse_duration)]
    pub wait: Option<Option<std::time::Duration>>,
    /// Train up to N runs at once, one process each, on the same device: for
    /// runs that leave a GPU idle (small models, the loader, evaluation).
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "slurm", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Memory layout of the convolutions: auto is channels-last for ResNets
    /// under bf16 autocast on CUDA. It changes speed, not results (beyond rounding).
    #[arg(long, value_enum, default_value = "auto")]
    pub memory_format: crate::models::memory_format::MemoryFormat,
    /// Set by `--parallel` on its worker processes: runs a sibling holds are
    /// passed over quietly, and the summary is the parent's to print.
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Where the audit job of --slurm writes its report.
    #[arg(long, default_value = "reports", requires = "slurm")]
    pub reports: std::path::PathBuf,
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmOptions,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// An experiment's checkpoint folder (checkpoints/<experiment>/).
    pub dir: std::path::PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// An experiment's checkpoint folder (checkpoints/<experiment>/) or one run folder.
    #[arg(required_unless_present = "weights")]
    pub runs: Option<std::path::PathBuf>,
    /// Or a model trained elsewhere, from files.
    #[command(flatten)]
    pub files: AuditFromFiles,
    /// Taps to cluster, comma-separated (default: run.yaml's audit.taps, else ResNet layer3,layer4 / ViT the last block).
    #[arg(long, value_delimiter = ',')]
    pub taps: Option<Vec<String>>,
    /// Number of clusters.
    #[arg(value_parser = at_least_one, short = 'k', long)]
    pub k: Option<usize>,
    #[arg(long, value_enum)]
    pub method: Option<crate::config::ClusterMethod>,
    #[arg(long, value_enum)]
    pub scope: Option<crate::config::Scope>,
    /// Number of probe images from the test split.
    #[arg(value_parser = at_least_one, long)]
    pub probes: Option<usize>,
    /// Clustering repeats with different seeds.
    #[arg(value_parser = at_least_one, long)]
    pub repeats: Option<usize>,
    /// Cluster on a finer grid of this side.
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long)]
    pub resolution: Option<i64>,
    /// Write pictures for the first N probe images only (default: all); the
    /// measures always use every probe.
    #[arg(value_parser = at_least_one, long)]
    pub pictures: Option<usize>,
    /// Redo runs whose audit is up to date.
    #[arg(long)]
    pub force: bool,
    /// Where reports go: <reports>/<experiment>/.
    #[arg(long, default_value = "reports")]
    pub reports: std::path::PathBuf,
    /// Probe images shown in the report's comparison grid.
    #[arg(long, default_value_t = 12)]
    pub grid_probes: usize,
    /// Audit only this run, into reports/.<experiment>.parts/<ID>/; the next
    /// full audit takes it in (for schedulers: one task per run, then a merge).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmOptions,
}

#[derive(Debug, Args)]
pub struct ReviseArgs {
    /// An audit's report folder (reports/<experiment>/), as `nave-lab audit` wrote it.
    pub report: std::path::PathBuf,
    /// Revise this run only (refused when it is not flagged, unless --force).
    #[arg(long, value_name = "ID", conflicts_with = "flagged")]
    pub run: Option<String>,
    /// Revise every flagged run (the default).
    #[arg(long)]
    pub flagged: bool,
    /// How the found shortcut is neutralised in the training images;
    /// comma-separated to sweep (default: the experiment's revise.methods,
    /// else augment). `none` is the control: the same fine-tune, nothing neutralised.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub method: Option<Vec<crate::config::ReviseMethod>>,
    /// Fine-tuning epochs (default: the experiment's revise.epochs, else 20).
    #[arg(value_parser = at_least_one, long)]
    pub epochs: Option<usize>,
    /// The fine-tune's learning rate as a share of the run's (default: the
    /// experiment's revise.lr_scale, else 0.5).
    #[arg(long)]
    pub lr_scale: Option<f64>,
    /// Revise a run that is not flagged, on the detector's best candidate.
    #[arg(long)]
    pub force: bool,
    /// Convolution memory layout, as for `train`.
    #[arg(long, value_enum, default_value = "auto")]
    pub memory_format: crate::models::memory_format::MemoryFormat,
    /// Probe images shown in the report's comparison grid.
    #[arg(long, default_value_t = 12)]
    pub grid_probes: usize,
}

/// `audit --weights`: a model trained anywhere and the data it was trained on.
#[derive(Debug, Args)]
pub struct AuditFromFiles {
    /// Weights of a model trained elsewhere (.pth, .pt or .safetensors with
    /// torchvision, timm or DINO tensor names), audited instead of RUNS;
    /// needs --arch and --data.
    #[arg(long, requires_all = ["arch", "data"], conflicts_with_all = ["runs", "run", "slurm"])]
    pub weights: Option<std::path::PathBuf>,
    #[arg(long, value_enum, requires = "weights")]
    pub arch: Option<crate::models::Arch>,
    /// Its training data: a folder of class folders (as torchvision's
    /// ImageFolder reads them) or a CSV of path,label lines.
    #[arg(long, requires = "weights")]
    pub data: Option<std::path::PathBuf>,
    /// Held-out images, in the same layout: probed, and the model's accuracy
    /// measured on them (default: probes from the training data).
    #[arg(long, requires = "weights")]
    pub test: Option<std::path::PathBuf>,
    /// Side the images are resized to, as the model was trained.
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(i64).range(16..=1024))]
    pub image_size: i64,
    /// Resize each image's shorter side to this first (aspect kept), then
    /// crop the centre --image-size square, as torchvision's Resize +
    /// CenterCrop (default: resize to --image-size, no crop).
    #[arg(long, requires = "weights", value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub resize: Option<u32>,
    /// The classes in the model's output order (default: sorted by name, as
    /// torchvision's ImageFolder orders them).
    #[arg(long, value_delimiter = ',', requires = "weights")]
    pub classes: Option<Vec<String>>,
    /// Per-channel mean the model was trained with, on [0, 1] pixels.
    #[arg(long, value_delimiter = ',', default_value = "0.485,0.456,0.406")]
    pub mean: Vec<f64>,
    /// Per-channel standard deviation the model was trained with.
    #[arg(long, value_delimiter = ',', default_value = "0.229,0.224,0.225")]
    pub std: Vec<f64>,
    /// The report's name, <reports>/<name>/ (default: the weights file's name
    /// without its extension).
    #[arg(long, requires = "weights")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The audit's folder: reports/<experiment>/ (holding audit.json).
    pub dir: std::path::PathBuf,
    /// Probe images shown in the comparison grid.
    #[arg(long, default_value_t = 12)]
    pub grid_probes: usize,
}

/// Which model to explain: a run folder, or weights with an architecture.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["run", "weights"])))]
pub struct ModelSource {
    /// A run folder (its run.yaml and model.safetensors).
    #[arg(long)]
    pub run: Option<std::path::PathBuf>,
    /// Weights: a file with torchvision/timm/DINO tensor names (safetensors
    /// or .pth; needs --arch), or a name downloaded once into the cache
    /// (torchvision:resnet50, dino:vits16, dinov2:vits14_reg,
    /// timm:vit_small_patch16_224.<tag>; $NAVE_LAB_MIRROR replaces the hosts).
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    #[arg(long, value_enum)]
    pub arch: Option<crate::models::Arch>,
    /// Where named weights come from.
    #[command(flatten)]
    pub download: DownloadArgs,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub model: ModelSource,
    /// The image to explain (JPEG or PNG).
    #[arg(long)]
    pub image: std::path::PathBuf,
    /// Number of clusters.
    #[arg(value_parser = at_least_one, short = 'k', long, default_value_t = 5)]
    pub k: usize,
    /// Taps, comma-separated (default: ResNet layer3,layer4; ViT the last block).
    #[arg(long, value_delimiter = ',')]
    pub taps: Option<Vec<String>>,
    #[arg(long, value_enum, default_value = "kmeans")]
    pub method: crate::config::ClusterMethod,
    /// Side the image is resized to (default: the run's image size, else 224).
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long)]
    pub image_size: Option<i64>,
    /// Cluster on a finer grid of this side.
    #[arg(value_parser = clap::value_parser!(i64).range(1..), long)]
    pub resolution: Option<i64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output overlay PNG; <stem>_avg.png, <stem>_labels.png and <stem>_labels_up.png go beside it.
    #[arg(short, long)]
    pub out: std::path::PathBuf,
    /// Also write the NAVE feature matrix (rows = grid cells in row-major order, float32 .npy).
    #[arg(long)]
    pub save_features: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct LocalizeArgs {
    #[arg(long, value_enum)]
    pub dataset: crate::localize::dataset::LocalizeDataset,
    /// voc07/voc12: the folder that contains VOCdevkit/; coco20k: the COCO folder (annotations/, images/train2014/, coco_20k_filenames.txt).
    #[arg(long)]
    pub root: std::path::PathBuf,
    #[command(flatten)]
    pub model: ModelSource,
    /// Taps (default: ResNet layer3,layer4; ViT the last block).
    #[arg(long, value_delimiter = ',')]
    pub taps: Option<Vec<String>>,
    /// Numbers of clusters to evaluate.
    #[arg(value_parser = at_least_one, short = 'k', long, value_delimiter = ',', default_value = "5")]
    pub k: Vec<usize>,
    #[arg(long, value_enum, default_value = "kmeans")]
    pub method: crate::config::ClusterMethod,
    /// k-means starts per image, the lowest inertia kept (default: 10 for the
    /// author protocol, as scikit-learn's KMeans then, 1 for paper).
    #[arg(long, value_parser = at_least_one)]
    pub n_init: Option<usize>,
    /// author: as the first author's evaluation code computes it (padded map,
    /// 14-px frame, inner box selects, outer box scores, IoU > 0.5, ResNet50
    /// layer4 dilated); paper: the appendix read literally.
    #[arg(long, value_enum, default_value = "author")]
    pub protocol: crate::localize::Protocol,
    /// Paper protocol: the boxes scored (default inner,outer).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub strategy: Option<Vec<crate::localize::Strategy>>,
    /// Drop difficult and truncated VOC objects.
    #[arg(long)]
    pub no_hard: bool,
    /// Paper protocol: components smaller than this many pixels are dropped (default 784).
    #[arg(long)]
    pub min_size: Option<usize>,
    /// Also evaluate SLIC superpixels (K segments) through the same selection.
    #[arg(long)]
    pub slic: bool,
    /// Evaluate only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images drawn with their chosen boxes.
    #[arg(long, default_value_t = 8)]
    pub examples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (default reports/localize-<dataset>).
    #[arg(short, long)]
    pub out: Option<std::path::PathBuf>,
}

impl LocalizeArgs {
    /// What the user chose, for `localize::Settings::for_protocol`.
    pub fn choices(&self) -> crate::localize::Choices {
        crate::localize::Choices {
            protocol: self.protocol,
            taps: self.taps.clone(),
            ks: self.k.clone(),
            method: self.method,
            n_init: self.n_init,
            strategies: self.strategy.clone(),
            min_size: self.min_size,
            slic: self.slic,
            seed: self.seed,
            examples: self.examples,
        }
    }
}
