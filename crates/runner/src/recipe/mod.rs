//! From a recipe file to a plan of runs: the recipe as written and its errors located in
//! the file (`file`), one run's resolved settings (`settings`), and the sweep expanded
//! into runs with their ids (`plan`), and the JSON Schema editors check recipes with
//! (`schema`). Nothing here trains or writes.
//!
//! May import: `store` (claim timings, the ImageNet weight files a recipe may name) and
//! the library crates; nothing of `run`, `cluster`, `report` or `commands`.

mod file;
pub mod plan;
pub mod schema;
pub mod settings;
pub mod volume_input;

pub use file::{
    Distribution, FoldChoice, Origin, RandomSearch, Recipe, RecipeError, RecipeFile, ReportSection, RunSection,
    SetFlags, SlurmSection, SplitRecipe, Sweep, TrackSection, did_you_mean, explain, layered, locate,
};
