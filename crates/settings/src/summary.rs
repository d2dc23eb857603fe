//! The model summary: a built network's stages, their output shapes and parameter counts,
//! as radrun prints it at the start of a run and keeps it in `model_summary.txt`. The
//! models crate fills it in; the runner prints and stores it without libtorch.

use std::fmt;

use serde::Serialize;

/// One row of the model summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    pub layer: String,
    pub output_shape: Vec<i64>,
    pub params: i64,
}

/// What `radrun` prints at the start of a run and stores as `model_summary.txt`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub kind: String,
    /// Channels, then the spatial sides.
    pub input: Vec<i64>,
    pub rows: Vec<SummaryRow>,
    /// All values stored, batch-norm running statistics included (Keras' "total").
    pub total_params: i64,
    /// Learnable parameters (weights and biases).
    pub parameters: i64,
    /// Learnable parameters not frozen right now.
    pub trainable_params: i64,
}

fn thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input: Vec<String> = self.input.iter().map(i64::to_string).collect();
        writeln!(f, "Model: {} (input {})", self.kind, input.join(" x "))?;
        writeln!(f, "  {:<28}{:<24}{:>14}", "layer", "output shape", "parameters")?;
        for row in &self.rows {
            let shape: Vec<String> = row.output_shape.iter().skip(1).map(i64::to_string).collect();
            let params = if row.params > 0 { thousands(row.params) } else { String::new() };
            writeln!(f, "  {:<28}{:<24}{:>14}", row.layer, format!("[{}]", shape.join(", ")), params)?;
        }
        writeln!(f, "  learnable parameters: {}", thousands(self.parameters))?;
        writeln!(f, "  trainable now:        {}", thousands(self.trainable_params))?;
        writeln!(
            f,
            "  non-trainable:        {} (incl. batch-norm statistics)",
            thousands(self.total_params - self.trainable_params)
        )
    }
}
