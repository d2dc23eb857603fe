//! The report's HTML: escaping, tables, the page around the sections, its style and its
//! one script (sorting tables by a column). Every text from files or the recipe goes
//! through [`escape`].

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine;

use super::{PlanRecord, Table};
use crate::store::Status;

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The element id of a run's section.
pub fn anchor(run_id: &str) -> String {
    format!("run-{run_id}")
}

/// A PNG file as a data URI.
pub fn png_uri(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// The last component of a path as written in a CSV.
pub fn file_name(path: &str) -> String {
    Path::new(path).file_name().map_or(path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// A number cell shown with 4 decimals (integers as they are); other text unchanged.
pub fn number(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(v) if cell.contains('.') || cell.contains('e') => format!("{v:.4}"),
        _ => cell.to_string(),
    }
}

pub fn section(id: &str, title: &str, content: &str) -> String {
    format!("<section id=\"{id}\"><h2>{title}</h2>{content}</section>")
}

/// The page: title, generation facts, how many runs are in which state.
pub fn header(plan: &PlanRecord, statuses: &[Option<&Status>]) -> String {
    let counts = super::done_count(statuses);
    let states: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
    let mut nav =
        String::from("<a href=\"#recipe\">recipe</a> · <a href=\"#data\">data</a> · <a href=\"#runs\">runs</a>");
    for (id, _) in &plan.runs {
        let _ = write!(nav, " · <a href=\"#{}\">{}</a>", escape(&anchor(id)), escape(id));
    }
    format!(
        "<header><h1>radrun report: {}</h1><p>{} runs: {}. Written {} by radrun {}.</p><nav>{nav}</nav></header>",
        escape(&plan.recipe_name),
        plan.runs.len(),
        states.join(", "),
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        env!("CARGO_PKG_VERSION"),
    )
}

pub fn recipe(plan: &PlanRecord) -> String {
    let file = radrun_data::paths::path_text(&plan.recipe_file);
    let mut out = format!("<p>{}</p><pre>{}</pre>", escape(&file), escape(&plan.recipe_text));
    if !plan.set_flags.is_empty() {
        let flags: Vec<String> = plan.set_flags.iter().map(|f| format!("<code>--set {}</code>", escape(f))).collect();
        let _ = write!(out, "<p>With {}</p>", flags.join(" "));
    }
    out
}

/// A CSV table as a sortable HTML table. Cells of column `link` link to the run of
/// that id; the row whose `link` cell is `best` is highlighted.
pub fn table(table: &Table, id: &str, link: &str, best: Option<&str>) -> String {
    let link = table.column(link);
    let mut out = format!(
        "<table class=\"sortable\"{}><thead><tr>",
        if id.is_empty() { String::new() } else { format!(" id=\"{id}\"") }
    );
    for h in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out += "</tr></thead><tbody>";
    for row in &table.rows {
        let is_best = link.is_some_and(|c| Some(row[c].as_str()) == best);
        out += if is_best { "<tr class=\"best\">" } else { "<tr>" };
        for (c, cell) in row.iter().enumerate() {
            let shown = if Some(c) == link {
                format!("<a href=\"#{}\">{}</a>", escape(&anchor(cell)), escape(cell))
            } else {
                escape(&number(cell))
            };
            let _ = write!(out, "<td data-sort=\"{}\">{shown}</td>", escape(cell));
        }
        out += "</tr>";
    }
    out + "</tbody></table>"
}

/// A run's swept values, state, device, time and error or note.
pub fn run_facts(plan: &PlanRecord, values: &[String], status: Option<&Status>) -> String {
    let mut facts: Vec<String> =
        plan.swept_keys.iter().zip(values).map(|(k, v)| format!("<b>{}</b> = {}", escape(k), escape(v))).collect();
    match status {
        None => facts.push("<b>state</b>: pending".into()),
        Some(s) => {
            facts.push(format!("<b>state</b>: <span class=\"state-{0}\">{0}</span>", s.state.name()));
            if let Some(device) = &s.device {
                facts.push(format!("<b>device</b>: {}", escape(device)));
            }
            if let Some(seconds) = s.seconds {
                facts.push(format!("<b>time</b>: {seconds:.0} s"));
            }
            if !s.test.is_empty() {
                let metrics: Vec<String> = s
                    .test
                    .iter()
                    .map(|(k, v)| match s.test_intervals.get(k) {
                        Some(i) => format!("{} {v:.4} ({:.4}-{:.4})", escape(k), i.lower, i.upper),
                        None => format!("{} {v:.4}", escape(k)),
                    })
                    .collect();
                facts.push(format!("<b>test</b>: {}", metrics.join(", ")));
            }
        }
    }
    let mut out = format!("<p class=\"facts\">{}</p>", facts.join(" · "));
    if let Some(s) = status {
        for (class, text) in [("error", &s.error), ("note", &s.note)] {
            if let Some(text) = text {
                let _ = write!(out, "<p class=\"{class}\">{}</p>", escape(text));
            }
        }
    }
    out
}

/// The gallery of gallery.csv: each test image beside its Grad-CAM overlay.
pub fn gallery(dir: &Path, table: &Table) -> String {
    let col = |name: &str| table.column(name);
    let (Some(image), Some(gradcam), Some(file), Some(truth), Some(predicted), Some(p)) =
        (col("image"), col("gradcam"), col("file"), col("true_class"), col("predicted_class"), col("probability"))
    else {
        return String::new();
    };
    let mut out = String::from(
        "<h3>Test images</h3><p>Misclassified first (most confident first), then correct ones from across the \
         test set; beside each, its Grad-CAM map of the predicted class.</p><div class=\"gallery\">",
    );
    for row in &table.rows {
        let (Some(a), Some(b)) = (png_uri(&dir.join(&row[image])), png_uri(&dir.join(&row[gradcam]))) else { continue };
        let wrong = row[truth] != row[predicted];
        let caption = format!(
            "{}<br>true: {} · predicted: {} ({:.0}%)",
            escape(&file_name(&row[file])),
            escape(&row[truth]),
            escape(&row[predicted]),
            row[p].parse::<f64>().unwrap_or(f64::NAN) * 100.0
        );
        let alt = escape(&format!("{} (true {}, predicted {})", file_name(&row[file]), row[truth], row[predicted]));
        let _ = write!(
            out,
            "<figure class=\"{}\"><img class=\"thumb\" alt=\"{alt}\" src=\"{a}\"><img class=\"thumb\" alt=\"Grad-CAM of {alt}\" \
             src=\"{b}\"><figcaption>{caption}</figcaption></figure>",
            if wrong { "wrong" } else { "right" }
        );
    }
    out + "</div>"
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px 48px; color: #222; }
header { border-bottom: 2px solid #0072b2; margin-bottom: 8px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-top: 12px; } h3 { font-size: 15px; }
nav { font-size: 12px; padding-bottom: 8px; word-break: break-all; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #eef3f8; cursor: pointer; user-select: none; }
th.asc::after { content: " ▲"; } th.desc::after { content: " ▼"; }
td:first-child, td:nth-child(2) { text-align: left; }
tr.best td { background: #fff3c4; font-weight: 600; }
.charts, .multiples, .gallery { display: flex; flex-wrap: wrap; gap: 8px; }
img.chart { width: 460px; max-width: 100%; } img.chart.small { width: 300px; } img.chart.wide { width: auto; max-width: 100%; }
figure { margin: 0; padding: 4px; border: 2px solid #cde5cf; font-size: 11px; width: 264px; }
figure.wrong { border-color: #e69f9f; }
img.thumb { width: 128px; height: 128px; object-fit: contain; background: #000; }
.facts { font-size: 13px; } .error { color: #a00; } .note { color: #555; font-style: italic; }
.state-done { color: #060; } .state-failed { color: #a00; } .state-running, .state-interrupted { color: #a60; }
"#;

/// Sorts a table by the clicked column: numbers as numbers, the rest as text; a second
/// click reverses.
const SCRIPT: &str = r#"
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var ascending = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(ascending ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) { return row.cells[column] ? row.cells[column].getAttribute('data-sort') : ''; };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        var numeric = x !== '' && y !== '' && !isNaN(nx) && !isNaN(ny) && isFinite(x) && isFinite(y);
        var order = numeric ? nx - ny : (x === '' ? 1 : y === '' ? -1 : x.localeCompare(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"#;

/// The whole page around `body`. The content security policy lets nothing load from
/// anywhere: images are data URIs, style and script are inline.
pub fn document(recipe_name: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>radrun report: {}</title><style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n",
        escape(recipe_name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape("<img src=x onerror=\"alert(1)\">&'"),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
    }
}
