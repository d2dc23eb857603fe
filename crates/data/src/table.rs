//! A table that `[data]` reads (the labels table, the group table, a subgroup's
//! table): a CSV file, or a sheet of an Excel or OpenDocument workbook (`.xlsx`,
//! `.xlsm`, `.xlsb`, `.xls`, `.ods`, read by calamine): the labels table's is the one
//! `data.sheet` names (else the first), the others' their first. Either becomes a header
//! and rows of text, each row with its line: the CSV line its record starts on, or the
//! row number the spreadsheet shows. A cell holding a spreadsheet error (`#N/A`,
//! `#DIV/0!`) is an error naming its row and column; a formula saved without its value
//! (some writers do) reads as empty.
//!
//! A workbook cell is read as text: text as typed, a whole number without a decimal
//! point (`12`, not `12.0`; Excel keeps every number as a float), other numbers in full,
//! a date as Excel's serial day number (type dates as text to keep them). Excel keeps an ID
//! typed as a number as a number and drops its leading zeros (`00123` becomes `123`), so
//! such an ID may no longer match a file name or a DICOM PatientID: an identifier column
//! (`file`, `patient`, `patient_id`, or a name ending in `id`) holding numbers is
//! warned about, naming the column and the fix (format it as text).

use std::fmt;
use std::path::Path;

use calamine::{Data, Reader};

use crate::paths::path_text;
use crate::settings::{DataSettings, GroupBy};

/// The extensions read as workbooks.
const WORKBOOKS: [&str; 5] = ["xlsx", "xlsm", "xlsb", "xls", "ods"];

/// Why a table cannot be read, and on which line (0: the file as a whole).
#[derive(Debug)]
pub(crate) struct TableError {
    pub(crate) line: usize,
    pub(crate) why: String,
}

impl TableError {
    fn file(why: impl Into<String>) -> Self {
        TableError { line: 0, why: why.into() }
    }

    /// The reason, with `hint` when the file as a whole cannot be read (a line's fault
    /// is the line's).
    pub(crate) fn with_hint(&self, hint: &str) -> String {
        if self.line > 0 { self.to_string() } else { format!("{}; {hint}", self.why) }
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.why),
            line => write!(f, "line {line}: {}", self.why),
        }
    }
}

/// A table's header and rows of text.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    headers: Vec<String>,
    /// Each row's line (1 is the header) and cells.
    rows: Vec<(usize, Vec<String>)>,
    /// What did not stop the reading: identifier columns holding numbers.
    pub(crate) warnings: Vec<String>,
}

impl Table {
    /// Reads the CSV file or workbook at `path` (`sheet`: the sheet to read, empty for
    /// the first; a CSV file has none); the error says why, with the line where there
    /// is one.
    pub(crate) fn open(path: &Path, sheet: &str) -> Result<Table, TableError> {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        match (WORKBOOKS.contains(&extension.as_str()), sheet) {
            (true, _) => workbook(path, sheet),
            (false, "") => csv_file(path),
            (false, sheet) => Err(TableError::file(format!(
                "is a CSV file, which has no sheets, but `data.sheet = \"{sheet}\"`: remove `data.sheet`"
            ))),
        }
    }

    /// The column named one of `names`.
    pub(crate) fn column(&self, names: &[&str]) -> Option<usize> {
        self.headers.iter().position(|h| names.contains(&h.trim()))
    }

    /// The column named one of `names`, or why the table lacks it.
    pub(crate) fn required(&self, names: &[&str]) -> Result<usize, String> {
        self.column(names).ok_or_else(|| {
            let wanted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("has no {} column (columns: {})", wanted.join(" or "), self.headers.join(", "))
        })
    }

    /// Each row's line and cells (a row may be shorter than the header: see [`cell`]).
    pub(crate) fn rows(&self) -> impl Iterator<Item = (usize, &[String])> {
        self.rows.iter().map(|(line, cells)| (*line, cells.as_slice()))
    }
}

/// The warnings of the tables `settings` reads (`data.labels`, `data.group_by = { csv
/// = ... }`), for the data summary; a table that cannot be read gives its error
/// elsewhere.
pub(crate) fn table_warnings(settings: &DataSettings) -> Vec<String> {
    let labels = (!settings.labels.as_os_str().is_empty()).then_some(&settings.labels);
    let groups = match &settings.group_by {
        GroupBy::Csv(file) => Some(file),
        _ => None,
    };
    // the labels table's sheet is `data.sheet`; a group table is read from its first
    let labels = labels.and_then(|file| Table::open(&settings.root.join(file), &settings.sheet).ok());
    let groups = groups
        .filter(|file| **file != settings.labels)
        .and_then(|file| Table::open(&settings.root.join(file), "").ok());
    [labels, groups].into_iter().flatten().flat_map(|table| table.warnings).collect()
}

/// Cell `column` of a row, trimmed; empty when the row stops before it.
pub(crate) fn cell(row: &[String], column: usize) -> &str {
    row.get(column).map_or("", |c| c.trim())
}

fn csv_file(path: &Path) -> Result<Table, TableError> {
    let unreadable = |e: csv::Error| match e.position() {
        Some(at) => TableError { line: at.line() as usize, why: e.to_string() },
        None => TableError::file(format!("cannot be read ({e})")),
    };
    let mut reader = csv::Reader::from_path(path).map_err(unreadable)?;
    let headers = reader.headers().map_err(unreadable)?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(unreadable)?;
        // the line the record starts on, quoted line breaks counted (the csv crate's; a
        // blank line before a record is counted in it)
        let line = record.position().map_or(0, |at| at.line() as usize);
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(Table { headers, rows, warnings: Vec::new() })
}

fn workbook(path: &Path, sheet: &str) -> Result<Table, TableError> {
    let mut book = calamine::open_workbook_auto(path)
        .map_err(|e| TableError::file(format!("cannot be read as a workbook ({e})")))?;
    let names = book.sheet_names();
    let name = match sheet {
        "" => names.first().cloned().ok_or_else(|| TableError::file("has no sheet"))?,
        wanted if names.iter().any(|n| n == wanted) => wanted.to_string(),
        wanted => {
            return Err(TableError::file(format!(
                "has no sheet \"{wanted}\" (`data.sheet`); its sheets: {}",
                names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let range =
        book.worksheet_range(&name).map_err(|e| TableError::file(format!("sheet \"{name}\" cannot be read ({e})")))?;
    // the row number a spreadsheet shows: the used range may start below row 1
    let first = range.start().map_or(1, |(row, _)| row as usize + 1);
    let mut rows = range.rows();
    let headers: Vec<String> = rows.next().map(|r| r.iter().map(text).collect()).unwrap_or_default();
    let mut numeric: Vec<bool> = vec![false; headers.len()];
    let mut kept = Vec::new();
    for (i, row) in rows.enumerate() {
        let line = first + 1 + i;
        for (column, value) in row.iter().enumerate() {
            if matches!(value, Data::Int(_) | Data::Float(_)) && column < numeric.len() {
                numeric[column] = true;
            }
            if let Data::Error(error) = value {
                let header = headers.get(column).map_or("", String::as_str);
                let why =
                    format!("column `{header}` holds the spreadsheet error {error}: fix the cell in sheet \"{name}\"");
                return Err(TableError { line, why });
            }
        }
        // rows left empty (formatting only) are not rows of the table
        if row.iter().any(|c| !matches!(c, Data::Empty)) {
            kept.push((line, row.iter().map(text).collect()));
        }
    }
    let where_ = format!("{} (sheet \"{name}\")", path_text(path));
    let warnings = headers
        .iter()
        .zip(&numeric)
        .filter(|(header, numeric)| **numeric && is_identifier(header))
        .map(|(header, _)| {
            format!(
                "{where_}: column `{header}` holds numbers; Excel drops the leading zeros of IDs kept as numbers \
                 (00123 becomes 123), so they may not match the file names or DICOM PatientIDs: format the column \
                 as text in Excel and type the IDs again, or save the table as CSV"
            )
        })
        .collect();
    Ok(Table { headers, rows: kept, warnings })
}

/// Whether a column names things rather than measures them: `file`, `patient`, `id`,
/// `..._id` (or ` id`, `-id`), `...ID` and `...Id` after a lower-case letter
/// (`PatientID`, `patientId`; not `covid`, `COVID` or `thyroid`).
fn is_identifier(header: &str) -> bool {
    let header = header.trim();
    let name = header.to_ascii_lowercase();
    let camel =
        |suffix: &str| header.strip_suffix(suffix).is_some_and(|rest| rest.ends_with(|c: char| c.is_ascii_lowercase()));
    ["file", "patient", "patient_id", "id"].contains(&name.as_str())
        || ["_id", " id", "-id"].iter().any(|s| name.ends_with(s))
        || camel("ID")
        || camel("Id")
}

/// A cell as text (see the module docs).
fn text(value: &Data) -> String {
    match value {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        // Rust writes a whole float without its ".0" (123.0 as 123)
        Data::Float(f) => f.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workbook_cells_read_as_the_spreadsheet_shows_them() {
        assert_eq!(text(&Data::Float(123.0)), "123", "Excel keeps whole numbers as floats");
        assert_eq!(text(&Data::Float(0.25)), "0.25");
        assert_eq!(text(&Data::Int(7)), "7");
        assert_eq!(text(&Data::String(" P01 ".into())), " P01 ", "trimmed by `cell`, not here");
        assert_eq!(text(&Data::Empty), "");
        assert_eq!(text(&Data::Bool(true)), "true");
    }

    #[test]
    fn identifier_columns_are_told_from_measurements() {
        for id in ["file", "patient", "Patient_ID", "accession_id", "StudyID", "patientId", "id", "Subject ID"] {
            assert!(is_identifier(id), "{id}");
        }
        for value in ["age", "label", "site", "weight", "covid", "COVID", "thyroid", "valid", "Lipid"] {
            assert!(!is_identifier(value), "{value}");
        }
    }

    #[test]
    fn a_csv_table_keeps_its_lines_and_names_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "file,label\na.png,normal\nb.png,nodule\n").unwrap();
        let table = Table::open(&path, "").unwrap();
        let rows: Vec<(usize, Vec<String>)> = table.rows().map(|(l, r)| (l, r.to_vec())).collect();
        assert_eq!(rows[1], (3, vec!["b.png".to_string(), "nodule".to_string()]));
        assert_eq!(table.required(&["label"]), Ok(1));
        assert_eq!(table.required(&["patient"]), Err("has no `patient` column (columns: file, label)".into()));
        assert!(table.warnings.is_empty());
        // a record's line is the one it starts on: a quoted line break counts
        std::fs::write(&path, "file,label\na.png,\"two\nlines\"\nb.png,nodule\n").unwrap();
        let lines: Vec<usize> = Table::open(&path, "").unwrap().rows().map(|(l, _)| l).collect();
        assert_eq!(lines, [2, 4]);
        std::fs::write(&path, "file,label\na.png,normal\nb.png\n").unwrap();
        assert_eq!(Table::open(&path, "").unwrap_err().line, 3, "the short record's line");
        let error = Table::open(&path, "labels").unwrap_err().to_string();
        assert!(error.contains("is a CSV file, which has no sheets"), "{error}");
    }
}
