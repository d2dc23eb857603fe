//! The command line: `radrun RECIPE` (same as `radrun run RECIPE`), `radrun plan`,
//! `radrun status`, `radrun clean`, `radrun submit`, `radrun predict`, `radrun report`,
//! `radrun compare`, `radrun reproduce`, `radrun doctor`, `radrun weights`, `radrun dicom`,
//! `radrun completions`, `radrun man`, `radrun schema` and `radrun init`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Train and compare deep-learning models on medical images from a TOML recipe.
#[derive(Debug, Parser)]
#[command(
    name = "radrun",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "\
Examples:
  radrun recipes/chest_6class.toml           train every run of the recipe
  radrun plan recipes/cnn_grid.toml          show the runs and the data, train nothing
  radrun recipes/chest_6class.toml --set train.epochs=3
  radrun doctor                              which libtorch, CUDA and GPU radrun sees"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Write CSV cells as they are: by default a cell starting with =, +, -, @ (not a
    /// number) gets a leading apostrophe so that spreadsheets do not run it as a formula.
    #[arg(long, global = true)]
    pub csv_raw: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train every run of a recipe that is not done yet (the default command).
    #[command(long_about = "Train every run of a recipe that is not done yet.\n\n\
        Each run gets runs/<recipe>/<run id>/ with its resolved recipe, status, metrics.csv, \
        test evaluation and weights; runs/<recipe>/summary.csv ranks the runs.\n\n\
        Example: radrun run recipes/chest_6class.toml --set train.epochs=5")]
    Run(RunArgs),
    /// Show where each run of a recipe stands, here or on Slurm.
    #[command(long_about = "One line per run of the recipe: its state (pending, running with host, \
        process and heartbeat, done, failed with the error's first line, interrupted, stale), epochs \
        done and the best validation loss so far; with the Slurm jobs `radrun submit` recorded, each \
        array task's state from squeue. Rebuilds summary.csv. Exits 0 when every run is done, 1 when \
        a run failed, 4 while runs are still pending, running, interrupted or stale.\n\n\
        Example: radrun status recipes/cnn_grid.toml --runs /scratch/runs")]
    Status(StatusArgs),
    /// Remove the run folders of a recipe that none of its runs has any more.
    #[command(long_about = "With --orphans, remove the run folders under runs/<recipe>/ that belong to \
        no run of the recipe's plan now (`radrun status` lists them as orphaned): editing a swept value \
        or any setting gives the runs new ids and leaves the old folders behind. A run folder is one \
        whose status.json, written by radrun, names the folder's run; nothing else under runs/<recipe>/ \
        is touched. Each folder is claimed first, as a training process claims a run: one that a live \
        process is training in is kept, and so is one trained with other --set flags than those given \
        (a run of that variant: give the same flags to clean its orphans). --dry-run lists what would \
        be removed and kept, and removes nothing. Without --orphans nothing is removed (exit 2).\n\n\
        Example: radrun clean recipes/cnn_grid.toml --orphans --dry-run")]
    Clean(CleanArgs),
    /// Train a recipe's runs as a Slurm job array, one task per run not done yet.
    #[command(long_about = "Write runs/<recipe>/slurm/submit.sbatch, a job array with one task per \
        run not done yet (task I runs `radrun run RECIPE --index I` with the same --set flags and \
        runs folder), and submit it with sbatch; the job id goes to runs/<recipe>/slurm/jobs.json. \
        Tasks are requeued when preempted, and signalled 120 s before their time limit: they \
        checkpoint, and a requeued task goes on from there. Submitting again (after a time \
        limit, a failure or a cancellation) submits only the runs still not done, which resume \
        from their checkpoints.\n\n\
        Example: radrun submit recipes/cnn_grid.toml --slurm --partition gpu --gpus-per-run 1 \
        --time 4:00:00 --max-parallel 8")]
    Submit(SubmitArgs),
    /// Apply a trained run to new images.
    #[command(long_about = "Apply a finished run to new images with exactly its preprocessing \
        (window, frame, size, channels, resize rule, from its resolved recipe.toml) and the weights \
        its test evaluation used. INPUT: image files, or folders searched recursively for PNG, JPEG \
        and DICOM (with or without extension). Writes one row per file: the predicted class (or \
        labels), one probability per class and, for a two-class run, the call at its threshold; for \
        segmentation the mask (a PNG) and its area in pixels and mm²; and the error of a file that \
        cannot be read. Exits 1 when any could not.\n\n\
        RUN may instead be a recipe's runs folder with --best METRIC (the done run with the best \
        validation metric, e.g. val_loss) or --ensemble (the mean probabilities of its done runs, \
        e.g. the folds of a cross-validation; with --best, of the best configuration's runs).\n\n\
        Example: radrun predict runs/chest_6class/chest_6class-8dac176f new_scans/ --out predictions.csv\n\
        Example: radrun predict runs/chest_6class_cv new_scans/ --ensemble")]
    Predict(PredictArgs),
    /// Score a trained run on a labelled external set (another hospital, scanner or period).
    #[command(long_about = "Score a finished run on a labelled external set with exactly its \
        preprocessing and the weights its test evaluation used, and write \
        runs/<recipe>/external/<NAME>/: predictions, every metric of the internal test set with its \
        bootstrap interval, calibration, the operating point at the threshold the run chose on its \
        validation split (never re-tuned on the external set), the set's data summary and \
        fingerprint, and external.json. DATA holds class folders (classification), image and mask \
        folders (segmentation) or, with --labels, a labels table; directly, or in split folders \
        named as the run's, which are pooled. The set may not share a file or a patient with the \
        run's data (its split.csv), and may not hold a class the run does not know; classes it \
        lacks are reported. summary.md, summary.tex and report.html gain the external results.\n\n\
        RUN may be a recipe's runs folder with --best METRIC or --ensemble, as for predict.\n\n\
        Example: radrun evaluate runs/chest_6class/chest_6class-8dac176f other_hospital/ --name site_b")]
    Evaluate(EvaluateArgs),
    /// Write a run's model for PyTorch: TorchScript, or safetensors weights.
    #[command(long_about = "Write a finished run's model for use outside radrun, with a JSON file \
        beside it (<out>.json) that says its input (shape, pixel range and the run's preprocessing), \
        classes, output and threshold. torchscript (default): one file that PyTorch loads with \
        torch.jit.load and that returns the probabilities radrun predicts for an input batch \
        [n, channels, height, width] scaled to 0..1 as radrun decodes it. safetensors: the \
        weights radrun evaluated, named as torchvision names them for backbones (the \
        docs/commands.md shows how to load them into torchvision). ONNX is not written: \
        libtorch has no ONNX exporter.\n\n\
        Example: radrun export runs/chest_6class/chest_6class-8dac176f --out chest.pt")]
    Export(ExportArgs),
    /// Write report.html of a recipe's runs folder (also written after every `radrun RECIPE`).
    #[command(long_about = "Write runs/<recipe>/report.html: one self-contained page (no network \
        request; opens from a USB stick) with the recipe as written, the data summary, the sortable \
        table of runs with the best highlighted, each metric against each swept value, the \
        fold and seed aggregates, and per run its loss, accuracy or Dice and learning-rate curves, \
        confusion matrix, ROC curves, per-class table, test-image gallery with Grad-CAM, or \
        segmentation overlays worst first. Works on a partial sweep and while runs are going.\n\n\
        Example: radrun report runs/chest_6class")]
    Report {
        /// A recipe's runs folder, e.g. runs/chest_6class.
        folder: PathBuf,
    },
    /// Write methods.md and methods.tex of a recipe's runs folder from its run records.
    #[command(long_about = "Write runs/<recipe>/methods.md and methods.tex (also written after every \
        `radrun RECIPE` and `radrun evaluate`): a methods section in plain English, every number taken \
        from the finished runs' records (data counts, formats and fingerprint, preprocessing, partitions, \
        model and parameters, training, model selection, evaluation and intervals, external sets, \
        software), with the references to cite. Reword it; its numbers change only with the experiment.\n\n\
        Example: radrun methods runs/chest_6class_cv")]
    Methods {
        /// A recipe's runs folder, e.g. runs/chest_6class_cv.
        folder: PathBuf,
    },
    /// Show the runs a recipe expands to and the data summary; trains nothing.
    #[command(long_about = "Show the runs a recipe expands to (run id and swept values) and the \
        data summary; trains nothing. Every check of the recipe runs.\n\n\
        Example: radrun plan recipes/cnn_grid.toml")]
    Plan(PlanCommand),
    /// Report radrun's version, libtorch, CUDA, cuDNN, GPUs and CPU threads.
    #[command(long_about = "Report radrun's version, the libtorch it loaded (version and folder), \
        whether CUDA and cuDNN work, the GPUs and their memory, and the CPU threads used. Exits \
        non-zero when libtorch cannot compute or a GPU is present but unusable.\n\nExample: radrun doctor")]
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two classification runs on the same test images (paired bootstrap, DeLong).
    #[command(long_about = "Compare two finished classification runs tested on the same images: for \
        accuracy, balanced accuracy, macro F1 and macro AUC, the difference A - B with a paired \
        bootstrap interval and p-value (resampling patients when split.csv knows them), and DeLong's \
        test of each class's two AUCs.\n\n\
        Example: radrun compare runs/cnn_grid/<run A> runs/cnn_grid/<run B>")]
    Compare(CompareArgs),
    /// Train a finished run again from its folder and compare every metric.
    #[command(long_about = "Train a finished run again from its own resolved recipe.toml into a \
        scratch folder (removed afterwards unless --into is given), and print every validation and \
        test metric of both side by side with the difference, and whether the dataset's files are \
        unchanged. Exits 3 when a metric differs by more than the tolerance (0 on the CPU, where \
        runs are deterministic; 0.01 when a GPU was used).\n\n\
        Example: radrun reproduce runs/chest_6class/<run id>")]
    Reproduce(ReproduceArgs),
    /// Manage ImageNet backbone weights (cached under ~/.cache/radrun/weights).
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// What radrun reads from DICOM, NIfTI, PNG and JPEG files, and whether they decode.
    #[command(long_about = "What radrun reads from each file, and whether it can decode it: it \
        decodes each one to find out. DICOM: transfer syntax, photometric interpretation, bits, \
        rescale, window, frames, pixel spacing, position. NIfTI (.nii, .nii.gz; NIfTI-1 and -2): \
        format and datatype, shape, spacing, origin, orientation and affine (RAS+ mm, and whether \
        it came from the sform, the qform or pixdim), scaling, and the min, max, mean and SD of \
        the values after scaling. PNG and JPEG: size and bits. Exits 0 when every file decodes, \
        1 when some cannot (each named with the reason), 2 for usage errors. No patient \
        identity is printed.\n\n\
        Example: radrun inspect scans/ct.nii.gz scans/*.dcm")]
    Inspect {
        /// Files to inspect.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON array, one object per file.
        #[arg(long)]
        json: bool,
    },
    /// Look into DICOM files: what radrun reads from them and whether it can decode them.
    #[command(subcommand)]
    Dicom(DicomCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    #[command(long_about = "Print the completion script of SHELL on standard output: commands, \
        options and their values complete with Tab. Install it where the shell looks:\n\n  \
        bash: radrun completions bash > ~/.local/share/bash-completion/completions/radrun\n  \
        zsh:  radrun completions zsh > ~/.zfunc/_radrun   (with fpath+=~/.zfunc before compinit in \
        ~/.zshrc)\n  \
        fish: radrun completions fish > ~/.config/fish/completions/radrun.fish\n\n\
        Example: radrun completions bash > ~/.local/share/bash-completion/completions/radrun")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print radrun's manual page (roff), or write one page per command.
    #[command(long_about = "Print radrun's manual page (roff, section 1) on standard output, its \
        options and commands from the same definition as --help; with --dir, write it and a page \
        per command (radrun-plan.1, radrun-dicom-series.1, ...) into that folder.\n\n\
        Example: radrun man --dir ~/.local/share/man/man1 && man radrun-evaluate")]
    Man {
        /// Write every page into this folder (made if missing) instead of printing
        /// radrun's.
        #[arg(long, value_name = "FOLDER")]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of recipes, which editors use to complete and check them.
    #[command(long_about = "Print the JSON Schema (draft 2020-12) of radrun recipes: every key \
        with its description, default and allowed values, derived from the code that reads \
        recipes. A recipe whose first line is `#:schema PATH-OR-URL` is completed and checked \
        by taplo and by VS Code's Even Better TOML; the recipes in recipes/ point at the copy \
        in schema/recipe.schema.json.\n\n\
        Example: radrun schema > recipe.schema.json && taplo check my_recipe.toml")]
    Schema,
    /// Write a first recipe for a data folder, each value with its reason (it plans first).
    #[command(long_about = "Look at a data folder and write a first recipe that plans: the layout \
        found (class folders, image and mask folders, a labels table, a Decathlon dataset; NIfTI \
        makes it a volume recipe), the data summary as `radrun plan` prints it, and the values \
        proposed from it (image size, CT window, patient grouping, validation split, model \
        kind), each with a comment saying why, and the keys to change next commented out. It \
        reads every image as `radrun plan` does, and never replaces a file without --force.\n\n\
        Example: radrun init datasets.example/chest6 --out chest.toml && radrun chest.toml")]
    Init(InitArgs),
    /// Send to MLflow what runs hold and MLflow lacks.
    #[command(subcommand)]
    Track(TrackCommand),
}

#[derive(Debug, Subcommand)]
pub enum TrackCommand {
    /// Send to MLflow what a recipe's runs hold and MLflow lacks.
    #[command(long_about = "Send to the MLflow tracking server what the runs of a recipe with \
        [track] mlflow hold and the server lacks: what could not be sent while they trained (the \
        server down, slow or unreachable). Each run folder's mlflow.json says which MLflow run it \
        is and what was sent, so nothing is sent twice; run it again until it says every run was \
        sent.\n\n\
        Example: radrun track sync runs/chest_6class")]
    Sync {
        /// runs/<recipe> (or one run's folder).
        folder: PathBuf,
    },
}

/// `radrun init` options.
#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    /// The data folder: Train/ and Test/ of class folders or of Images with Masks folders,
    /// a labels table, or a Decathlon dataset (dataset.json).
    pub data: PathBuf,
    /// The task; found from the folder when left out.
    #[arg(long, value_parser = ["classification", "segmentation", "multilabel"])]
    pub task: Option<String>,
    /// The recipe file to write (relative paths in it start at its folder).
    #[arg(long, value_name = "FILE", default_value = "recipe.toml")]
    pub out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DicomCommand {
    /// What radrun reads from DICOM files, and whether it can decode their pixels.
    #[command(long_about = "What radrun reads from each DICOM file (transfer syntax, photometric \
        interpretation, bits, rescale, window, frames, pixel spacing, series position) and whether \
        it can decode the pixels: it decodes them to find out. Exits 0 when every file decodes, 1 \
        when some cannot (each named with the reason), 2 for usage errors. No patient identity is \
        printed. The same as `radrun inspect`, which also reads NIfTI, PNG and JPEG.\n\n\
        Example: radrun dicom inspect scans/*.dcm")]
    Inspect {
        /// DICOM files (with or without the .dcm extension).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON array, one object per file.
        #[arg(long)]
        json: bool,
    },
    /// Convert DICOM series into the PNG slices radrun reads, with a CSV of what came from where.
    #[command(long_about = "Convert the DICOM files under SRC into PNG slices under DST, one folder \
        per series (the folder the series came from, relative to SRC), slices numbered in the order \
        of their position along the normal of their plane. DST/slices.csv says which file each PNG \
        came from; series left out by a filter are listed with the reason. The tutorial's converter \
        had its filters hard-coded; here they are options, with its values as examples: \
        --max-thickness 2.5 --min-slices 150 --axial-only.\n\n\
        Example: radrun dicom slices exports/ data/ --window lung --max-thickness 2.5")]
    Slices {
        /// Folder of DICOM files (searched recursively).
        src: PathBuf,
        /// Output folder (created; existing PNGs of the same name are replaced).
        dst: PathBuf,
        /// Window as in a recipe: auto, file, lung, mediastinum, bone, brain, abdomen, or CENTER,WIDTH.
        #[arg(long, default_value = "auto")]
        window: String,
        /// png16 (16-bit gray, what radrun reads back without loss) or png8.
        #[arg(long, default_value = "png16")]
        format: String,
        /// Leave out series whose SliceThickness is above this many millimetres.
        #[arg(long)]
        max_thickness: Option<f64>,
        /// Leave out series with fewer slices.
        #[arg(long, default_value_t = 1)]
        min_slices: usize,
        /// Leave out sagittal and coronal series (x or y of ImagePositionPatient changing).
        #[arg(long)]
        axial_only: bool,
    },
    /// Convert each DICOM series under SRC into one NIfTI volume, with a CSV of what went where.
    #[command(long_about = "Convert each DICOM series under SRC (the files of one SeriesInstanceUID in \
        one folder, or an Enhanced multi-frame file) into one .nii.gz under DST, at the path of its \
        folder relative to SRC (a second series of one folder gets _series2, ...): the slices in \
        the order of their positions, modality values (HU for CT) as int16 when they are whole \
        numbers, else float32, and the affine SimpleITK gives the series (sform and qform). \
        DST/series.csv lists each series, its volume's shape, spacing and orientation, or why it \
        was refused (one slice, a gap, uneven spacing, mixed planes, a tilted gantry); no patient \
        identity. Exits 1 when a series or file could not be converted.\n\n\
        Example: radrun dicom series exports/ volumes/")]
    Series {
        /// Folder of DICOM files (searched recursively).
        src: PathBuf,
        /// Output folder (created; an existing volume of the same name is replaced).
        dst: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// List the backbones, their weight files and whether they are cached.
    List,
    /// Download a backbone's official ImageNet weights, verify the checksum, cache them.
    #[command(long_about = "Download a backbone's official ImageNet weights (torchvision's, or \
        timm's legacy_xception from the Hugging Face hub), verify the SHA-256 and store them as \
        safetensors in the cache, where model.weights = \"imagenet\" finds them.\n\n\
        Example: radrun weights fetch vgg19")]
    Fetch {
        /// resnet18, resnet50, vgg16, vgg19, inception_v3, xception, mobilenet_v2
        backbone: String,
    },
    /// Store a local .pth or .safetensors file as a backbone's ImageNet weights.
    #[command(long_about = "Check that a local weights file (.pth state dict or .safetensors, \
        torchvision/timm names) fits the backbone, and store it in the cache as its ImageNet \
        weights; for machines without internet.\n\nExample: radrun weights import vgg19 vgg19-dcbb9e9d.pth")]
    Import { backbone: String, file: PathBuf },
}

/// `radrun compare` options.
#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// Folder of the first run (runs/<recipe>/<run id>).
    pub run_a: PathBuf,
    /// Folder of the second run.
    pub run_b: PathBuf,
    /// Paired bootstrap resamples.
    #[arg(long, default_value_t = 2000)]
    pub resamples: u32,
    /// Coverage of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Seed of the resampling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `radrun reproduce` options.
#[derive(Debug, Args, Clone)]
pub struct ReproduceArgs {
    /// Folder of the finished run (runs/<recipe>/<run id>).
    pub run: PathBuf,
    /// Keep the reproduction in this folder (default: a temporary folder, removed).
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,
    /// Largest difference allowed in any metric (default 0 on the CPU, 0.01 on a GPU).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Print only the comparison.
    #[arg(long)]
    pub quiet: bool,
}

/// Options shared by `run` and `plan`.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanArgs {
    /// The recipe file (TOML).
    pub recipe: Option<PathBuf>,
    /// Override a recipe key, e.g. --set train.epochs=3 (repeatable; values are TOML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// `radrun predict` options.
#[derive(Debug, Args, Clone)]
pub struct PredictArgs {
    /// Folder of the finished run (runs/<recipe>/<run id>), or with --best or --ensemble
    /// a recipe's runs folder (runs/<recipe>).
    pub run: PathBuf,
    /// Image files or folders of them; for a volume run, NIfTI files, DICOM series
    /// folders or folders of them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The CSV file to write.
    #[arg(long, value_name = "FILE", default_value = "predictions.csv")]
    pub out: PathBuf,
    /// Images per batch (default: the run's batch size).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
    /// auto (CUDA when present), cpu, cuda or cuda:N; not the device the run trained on.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: radrun_settings::DeviceChoice,
    /// Single-label classification runs: write each file's Grad-CAM overlay of its
    /// predicted class into DIR (the `heatmap` column names it).
    #[arg(long, value_name = "DIR")]
    pub heatmaps: Option<PathBuf>,
    /// The stage Grad-CAM looks at: a layer of the run's model_summary.txt with feature
    /// maps, or auto (the last one).
    #[arg(long, value_name = "LAYER", default_value = "auto")]
    pub gradcam_layer: String,
    /// RUN is a runs folder: use its done run with the best value of this validation
    /// metric (a column of summary.csv such as val_loss or val_accuracy; losses lowest).
    #[arg(long, value_name = "METRIC")]
    pub best: Option<String>,
    /// RUN is a runs folder: average the probabilities of its done runs (all folds and
    /// seeds; with --best, those of the best configuration by its mean).
    #[arg(long)]
    pub ensemble: bool,
}

/// `radrun evaluate` options.
#[derive(Debug, Args, Clone)]
pub struct EvaluateArgs {
    /// Folder of the finished run (runs/<recipe>/<run id>), or with --best or --ensemble
    /// a recipe's runs folder (runs/<recipe>).
    pub run: PathBuf,
    /// The external set's folder.
    pub data: PathBuf,
    /// A labels table (a CSV file or a workbook, columns file and label, paths relative
    /// to DATA; every row is scored); default: the run's `data.labels` when it had one.
    #[arg(long, value_name = "TABLE")]
    pub labels: Option<PathBuf>,
    /// The external set's name: its folder under runs/<recipe>/external/ (default: DATA's
    /// folder name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// RUN is a runs folder: use its done run with the best value of this validation
    /// metric (as for predict).
    #[arg(long, value_name = "METRIC")]
    pub best: Option<String>,
    /// RUN is a runs folder: average the probabilities of its done runs (as for predict).
    #[arg(long)]
    pub ensemble: bool,
    /// Evaluate even though the set shares files or patients with the run's data (the
    /// record says so).
    #[arg(long)]
    pub allow_leakage: bool,
    /// Images per batch (default: the run's batch size).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,
    /// auto (CUDA when present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: radrun_settings::DeviceChoice,
}

/// What `radrun export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Torchscript,
    Safetensors,
    Onnx,
}

/// `radrun export` options.
#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// Folder of the finished run (runs/<recipe>/<run id>).
    pub run: PathBuf,
    #[arg(long, value_enum, default_value = "torchscript")]
    pub format: ExportFormat,
    /// The file to write (default: <run id>.pt or .safetensors in the current folder).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn parse_device(text: &str) -> Result<radrun_settings::DeviceChoice, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| e.to_string())
}

/// `radrun status` options.
#[derive(Debug, Args, Clone, Default)]
pub struct StatusArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Folder for run outputs.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs: PathBuf,
    /// Print the states as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `radrun clean` options.
#[derive(Debug, Args, Clone, Default)]
pub struct CleanArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Folder for run outputs.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs: PathBuf,
    /// Remove the run folders under runs/<recipe>/ that no run of the recipe has any more.
    #[arg(long)]
    pub orphans: bool,
    /// List what would be removed and kept; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `radrun submit` options.
#[derive(Debug, Args, Clone, Default)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Folder for run outputs (as the tasks will see it: a shared file system).
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs: PathBuf,
    /// Submit to Slurm (the cluster engine radrun knows).
    #[arg(long)]
    pub slurm: bool,
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// GPUs per run (--gres=gpu:N); 0 for CPU-only tasks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub gpus_per_run: u32,
    #[arg(long, value_name = "C")]
    pub cpus_per_run: Option<u32>,
    /// Memory per run, as sbatch writes it (16G).
    #[arg(long, value_name = "M")]
    pub mem: Option<String>,
    /// Time limit per run, as sbatch writes it (4:00:00).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// Run at most K tasks at once.
    #[arg(long, value_name = "K")]
    pub max_parallel: Option<u32>,
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// Print the job script; write and submit nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `radrun plan` options.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanCommand {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Also print each run's resolved recipe (every default written out).
    #[arg(long)]
    pub resolved: bool,
    /// Volumes (`data.dims = 3`): also list every case with its shape, spacing and
    /// voxels.
    #[arg(long)]
    pub cases: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Retrain runs that are already done.
    #[arg(long)]
    pub force: bool,
    /// Folder for run outputs.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs: PathBuf,
    /// Print only warnings and the results.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Print progress as JSON lines on stdout (for scripts and clusters).
    #[arg(long)]
    pub json: bool,
    /// Train only the run at this index of the plan (from 0, as `radrun plan` lists
    /// them; a Slurm array task passes $SLURM_ARRAY_TASK_ID).
    #[arg(long, value_name = "I", conflicts_with = "run")]
    pub index: Option<usize>,
    /// Train only the run with this id.
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
    /// Train up to N runs at a time, each in its own worker process, placed on the
    /// least loaded GPU and given its share of the CPU cores (default: the recipe's
    /// `run.jobs`, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..), conflicts_with_all = ["index", "run"])]
    pub jobs: Option<u16>,
    /// With several jobs, the GPUs to place runs on: indices as CUDA numbers them
    /// (0,1) or all (the default).
    #[arg(long, value_name = "LIST", value_parser = parse_gpus)]
    pub gpus: Option<Gpus>,
}

/// `--gpus`: every GPU, or these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gpus {
    All,
    List(Vec<usize>),
}

fn parse_gpus(text: &str) -> Result<Gpus, String> {
    if text == "all" {
        return Ok(Gpus::All);
    }
    let list = text.split(',').map(|g| g.trim().parse::<usize>()).collect::<Result<Vec<_>, _>>();
    match list {
        Ok(list) if !list.is_empty() => Ok(Gpus::List(list)),
        _ => Err(format!("\"{text}\" is not a GPU list: write all, or indices such as 0,1")),
    }
}
