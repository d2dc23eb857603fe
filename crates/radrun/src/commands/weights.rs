//! `radrun weights list|fetch|import`: the ImageNet backbone weights in radrun's cache.

use std::path::Path;

use radrun_settings::Backbone;

use radrun_runner::cli::WeightsCommand;
use radrun_runner::error::RadrunError;
use radrun_runner::store::imagenet::imagenet_file;

use crate::imagenet::{fetch, import};

pub fn weights(command: WeightsCommand) -> Result<(), RadrunError> {
    match command {
        WeightsCommand::List => {
            for b in Backbone::ALL {
                let file = imagenet_file(b);
                let state = if file.is_file() { "cached" } else { "not cached" };
                println!("{:<14} {state:<11} {}  (from {})", b.name(), file.display(), b.facts().weights.url);
            }
        }
        WeightsCommand::Fetch { backbone } => {
            let path = fetch(parse_backbone(&backbone)?, true).map_err(RadrunError::Weights)?;
            println!("stored {}", path.display());
        }
        WeightsCommand::Import { backbone, file } => {
            let path = import(parse_backbone(&backbone)?, &file).map_err(RadrunError::Weights)?;
            println!("stored {}", path.display());
        }
    }
    Ok(())
}

fn parse_backbone(name: &str) -> Result<Backbone, RadrunError> {
    Backbone::named(name).ok_or_else(|| {
        let names: Vec<&str> = Backbone::ALL.iter().map(|b| b.name()).collect();
        let hint = radrun_runner::recipe::did_you_mean(name, names.iter().copied())
            .map(|s| format!("; did you mean {s}?"))
            .unwrap_or_default();
        radrun_runner::commands::usage_error(
            Path::new("(command line)"),
            format!("unknown backbone \"{name}\"{hint} (one of {})", names.join(", ")),
        )
    })
}
