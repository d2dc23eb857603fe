//! Subgroups of a test set (`eval.subgroups`): the attribute that puts each image in a
//! subgroup, read from its DICOM header or from a column of the dataset's table, and
//! binned when it is a number. The metrics crate scores each subgroup.
//!
//! What may be read is limited so that nothing written lets a reader recover a patient:
//! - **DICOM attributes**: only those of [`TAGS`], which describe the acquisition or a
//!   coarse attribute of the patient. Names, identifiers, dates, times, UIDs and what
//!   the DICOM basic de-identification profile (PS3.15 table E.1-1) removes are refused
//!   with the reason; the age, size and weight of a patient only in bins.
//! - **Table columns**: any column but the file and patient ones; a column holding more
//!   than [`MAX_UNBINNED_NUMBERS`] different numbers (an age, a date as a number) only in
//!   bins.
//!
//! The scores then pool the levels of fewer patients than `eval.min_subgroup` into one
//! unnamed level (the metrics crate's `subgroups`): no name or result of such a level
//! is written.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use serde::{Deserialize, Serialize};

use crate::paths::{path_text, slash_path};
use crate::settings::{DataSettings, GroupBy};
use crate::table::{Table, cell};
use crate::{Error, FileKind, SettingError};

/// DICOM attributes a subgroup may be read from, and whether their value must be binned.
pub const TAGS: [(&str, Tag, bool); 24] = [
    ("Modality", tags::MODALITY, false),
    ("Manufacturer", tags::MANUFACTURER, false),
    ("ManufacturerModelName", tags::MANUFACTURER_MODEL_NAME, false),
    ("SoftwareVersions", tags::SOFTWARE_VERSIONS, false),
    ("BodyPartExamined", tags::BODY_PART_EXAMINED, false),
    ("ViewPosition", tags::VIEW_POSITION, false),
    ("PatientPosition", tags::PATIENT_POSITION, false),
    ("Laterality", tags::LATERALITY, false),
    ("ImageLaterality", tags::IMAGE_LATERALITY, false),
    ("PhotometricInterpretation", tags::PHOTOMETRIC_INTERPRETATION, false),
    ("DetectorType", tags::DETECTOR_TYPE, false),
    ("ConvolutionKernel", tags::CONVOLUTION_KERNEL, false),
    ("ContrastBolusAgent", tags::CONTRAST_BOLUS_AGENT, false),
    ("ScanningSequence", tags::SCANNING_SEQUENCE, false),
    ("MRAcquisitionType", tags::MR_ACQUISITION_TYPE, false),
    ("MagneticFieldStrength", tags::MAGNETIC_FIELD_STRENGTH, false),
    ("SliceThickness", tags::SLICE_THICKNESS, false),
    ("KVP", tags::KVP, false),
    ("XRayTubeCurrent", tags::X_RAY_TUBE_CURRENT, false),
    ("Exposure", tags::EXPOSURE, false),
    ("PatientSex", tags::PATIENT_SEX, false),
    ("PatientAge", tags::PATIENT_AGE, true),
    ("PatientSize", tags::PATIENT_SIZE, true),
    ("PatientWeight", tags::PATIENT_WEIGHT, true),
];

/// Attributes that identify a patient or a visit (refused by name; see [`refusal`]).
const IDENTIFYING: [&str; 14] = [
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
];

/// A table column with more different numbers than this is only read in bins.
pub const MAX_UNBINNED_NUMBERS: usize = 10;

/// A subgroup's level for an image whose attribute is absent or empty.
pub const NOT_RECORDED: &str = "not recorded";

/// One entry of `eval.subgroups`: where the attribute is read and its bins.
#[derive(Debug, Clone, PartialEq)]
pub struct Subgroup {
    pub source: Source,
    /// Edges of half-open bins `[a, b)`, increasing: a number is put in its bin.
    pub bins: Option<Vec<f64>>,
}

/// Where a subgroup's attribute is read.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A DICOM attribute by keyword (`"PatientSex"`), one of [`TAGS`].
    Tag(String),
    /// A column of a CSV table with a `file` column (paths relative to `data.root`):
    /// `table` (relative to `data.root`), else `data.labels`, else the table of
    /// `data.group_by = { csv = ... }`.
    Column { column: String, table: Option<PathBuf> },
}

/// The table form of an entry: `{ tag = "PatientAge", bins = [...] }` or
/// `{ column = "site", table = "clinical.csv" }`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubgroupTable {
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bins: Option<Vec<f64>>,
}

impl Serialize for Subgroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bins = self.bins.clone();
        match &self.source {
            Source::Tag(tag) if bins.is_none() => s.serialize_str(tag),
            Source::Tag(tag) => SubgroupTable { tag: Some(tag.clone()), column: None, table: None, bins }.serialize(s),
            Source::Column { column, table } => {
                SubgroupTable { tag: None, column: Some(column.clone()), table: table.clone(), bins }.serialize(s)
            }
        }
    }
}

impl schemars::JsonSchema for Subgroup {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Subgroup".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let tags: Vec<&str> = TAGS.iter().map(|(name, _, _)| *name).collect();
        let bins = schemars::json_schema!({ "type": "array", "items": { "type": "number" }, "minItems": 1 });
        schemars::json_schema!({
            "anyOf": [
                { "enum": tags },
                {
                    "type": "object",
                    "properties": { "tag": { "enum": tags }, "bins": bins },
                    "required": ["tag"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": { "column": { "type": "string" }, "table": { "type": "string" }, "bins": bins },
                    "required": ["column"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Subgroup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct SubgroupVisitor;
        impl<'de> Visitor<'de> for SubgroupVisitor {
            type Value = Subgroup;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a DICOM keyword such as \"PatientSex\", or a table { tag = \"PatientAge\", bins = [0, 40, 60, \
                     80, 200] } or { column = \"site\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Subgroup, E> {
                Ok(Subgroup { source: Source::Tag(v.to_string()), bins: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Subgroup, A::Error> {
                let t = SubgroupTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let source = match (t.tag, t.column) {
                    (Some(tag), None) if t.table.is_none() => Source::Tag(tag),
                    (None, Some(column)) => Source::Column { column, table: t.table },
                    (Some(_), None) => return Err(de::Error::custom("`table` goes with `column`, not with `tag`")),
                    _ => return Err(de::Error::custom("give exactly one of `tag` (a DICOM keyword) or `column`")),
                };
                Ok(Subgroup { source, bins: t.bins })
            }
        }
        d.deserialize_any(SubgroupVisitor)
    }
}

impl Levels {
    /// The levels of the images or cases `kept` (indices, in order).
    pub fn of(&self, kept: &[usize]) -> Levels {
        Levels { of_image: kept.iter().map(|&i| self.of_image[i].clone()).collect(), ..self.clone() }
    }
}

impl Subgroup {
    /// The subgroup's name in tables and charts: the keyword or the column.
    pub fn name(&self) -> &str {
        match &self.source {
            Source::Tag(tag) => tag,
            Source::Column { column, .. } => column,
        }
    }

    /// Whether the entry can be read: a whitelisted tag (binned where it must be), a
    /// column that is not the file or patient column, increasing bins.
    pub fn validate(&self, key: &str) -> Result<(), SettingError> {
        let fail = |message: String| Err(SettingError::new(key, message));
        if let Some(bins) = &self.bins
            && (bins.len() < 2 || bins.windows(2).any(|w| w[0] >= w[1]) || bins.iter().any(|b| !b.is_finite()))
        {
            return fail(format!(
                "for {}: `bins` are at least two increasing edges of half-open bins [a, b), e.g. [0, 40, 60, 80, \
                 200]; found {bins:?}",
                self.name()
            ));
        }
        match &self.source {
            Source::Tag(keyword) => match TAGS.iter().find(|(k, _, _)| k == keyword) {
                None => fail(refusal(keyword)),
                Some((_, _, true)) if self.bins.is_none() => fail(format!(
                    "reads {keyword} only in bins (an exact value can identify a patient): write {{ tag = \
                     \"{keyword}\", bins = [...] }}, e.g. bins = [0, 40, 60, 80, 200] for ages in years"
                )),
                Some(_) => Ok(()),
            },
            Source::Column { column, .. }
                if ["file", "patient", "patient_id"].contains(&column.trim().to_lowercase().as_str()) =>
            {
                fail(format!(
                    "cannot read column `{column}`: it names images or patients, whose results must stay hidden"
                ))
            }
            Source::Column { column, .. } if column.trim().is_empty() => fail("names an empty column".into()),
            Source::Column { .. } => Ok(()),
        }
    }
}

/// Why the DICOM attribute `keyword` cannot define a subgroup.
fn refusal(keyword: &str) -> String {
    use dicom_core::dictionary::DataDictionary;
    let allowed: Vec<&str> = TAGS.iter().map(|(k, _, _)| *k).collect();
    let instead = "give the attribute as a column of a table instead if your ethics approval allows it";
    let known = dicom_dictionary_std::StandardDataDictionary.by_name(keyword).is_some();
    let why = if !known {
        "it is not a DICOM keyword (they are written as PatientSex, Manufacturer...)".to_string()
    } else if keyword.ends_with("UID") {
        "it is a unique identifier of a study, series or image".to_string()
    } else if IDENTIFYING.contains(&keyword) || keyword.ends_with("Name") || keyword.ends_with("ID") {
        "it identifies a patient, a visit or a site, which a subgroup table would then name".to_string()
    } else if keyword.ends_with("Date") || keyword.ends_with("Time") || keyword.ends_with("DateTime") {
        "it is a date or time, which can identify a patient; use PatientAge in bins for age".to_string()
    } else {
        format!("it is not on radrun's list of attributes that do not identify a patient; {instead}")
    };
    format!("cannot read \"{keyword}\": {why}. Readable: {}", allowed.join(", "))
}

/// Each test image's level of every subgroup.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    /// The subgroup's name ([`Subgroup::name`]).
    pub name: String,
    /// Each image's level, in the order of the images.
    pub of_image: Vec<String>,
    /// The levels in the order tables list them: bins in order, then values by name,
    /// then [`NOT_RECORDED`] and the other levels of values outside the bins.
    pub order: Vec<String>,
}

/// The table a `{ column = ... }` subgroup reads unless it names one: `data.labels`, else
/// the table of `data.group_by = { csv = ... }`.
pub fn default_table(settings: &DataSettings) -> Option<PathBuf> {
    if !settings.labels.as_os_str().is_empty() {
        return Some(settings.labels.clone());
    }
    match &settings.group_by {
        GroupBy::Csv(table) => Some(table.clone()),
        _ => None,
    }
}

/// The levels of `subgroups` of the test images or cases at `paths` (a volume case: its
/// first channel's file or series folder), read from their DICOM headers (a series
/// folder's first file; a file that is not DICOM has none: [`NOT_RECORDED`]) and from
/// tables in `settings.root`.
pub fn read_levels(subgroups: &[Subgroup], paths: &[&Path], settings: &DataSettings) -> Result<Vec<Levels>, Error> {
    let wanted: Vec<(usize, Tag)> = subgroups
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.source {
            Source::Tag(k) => TAGS.iter().find(|(t, _, _)| t == k).map(|(_, tag, _)| (i, *tag)),
            Source::Column { .. } => None,
        })
        .collect();
    let tag_list: Vec<Tag> = wanted.iter().map(|(_, t)| *t).collect();
    // each file read once (the frames of a multi-frame file are samples of one path)
    let mut read: HashMap<&Path, Vec<Option<String>>> = HashMap::new();
    let mut headers: Vec<Vec<Option<String>>> = Vec::with_capacity(paths.len());
    for &path in paths {
        let file = match path.is_dir() {
            _ if tag_list.is_empty() => None,
            true => crate::volume_cases::series_files(path)?.into_iter().next(),
            false => Some(path.to_path_buf()),
        };
        let texts = match (read.get(path), file.filter(|f| FileKind::of(f) == Some(FileKind::Dicom))) {
            (Some(texts), _) => texts.clone(),
            (None, Some(file)) => {
                let texts = crate::decode::header_texts(&file, &tag_list)
                    .map_err(|e| Error::Subgroup(format!("cannot read the DICOM attributes: {e}")))?;
                read.insert(path, texts.clone());
                texts
            }
            (None, _) => vec![None; tag_list.len()],
        };
        headers.push(texts);
    }
    subgroups
        .iter()
        .enumerate()
        .map(|(i, subgroup)| {
            let values: Vec<Option<String>> = match &subgroup.source {
                Source::Tag(_) => {
                    let at = wanted.iter().position(|(w, _)| *w == i).expect("a validated tag");
                    headers.iter().map(|h| h[at].clone()).collect()
                }
                Source::Column { column, table } => column_values(settings, column, table.as_deref(), paths)?,
            };
            binned(subgroup, values)
        })
        .collect()
}

/// The value of `column` of each path's row in its table (`file` relative to
/// `data.root`); none when the row leaves it empty or the table has no row for it.
fn column_values(
    settings: &DataSettings,
    column: &str,
    table: Option<&Path>,
    paths: &[&Path],
) -> Result<Vec<Option<String>>, Error> {
    let subgroup = |why: String| Error::Subgroup(format!("{{ column = \"{column}\" }}: {why}"));
    let table = table.map(Path::to_path_buf).or_else(|| default_table(settings)).ok_or_else(|| {
        subgroup(
            "the dataset has no table (`data.labels` or `data.group_by = { csv = ... }`): name one with { column = \
             \"...\", table = \"clinical.csv\" } (a CSV in `data.root` with a `file` column)"
                .into(),
        )
    })?;
    let path = settings.root.join(&table);
    let in_table = |why: String| subgroup(format!("table {}: {why}", path_text(&path)));
    // `data.sheet` is the labels table's; another workbook is read from its first sheet
    let sheet = if table == settings.labels { settings.sheet.as_str() } else { "" };
    let table = Table::open(&path, sheet).map_err(|e| in_table(e.to_string()))?;
    for warning in &table.warnings {
        tracing::warn!("{warning}");
    }
    let file = table.required(&["file"]).map_err(in_table)?;
    let wanted = table.required(&[column]).map_err(in_table)?;
    let mut rows: HashMap<String, String> = HashMap::new();
    for (line, record) in table.rows() {
        let key = slash_path(Path::new(cell(record, file)));
        if rows.insert(key.clone(), cell(record, wanted).to_string()).is_some() {
            return Err(in_table(format!("line {line}: `{key}` is listed again; give each image one row")));
        }
    }
    let keys: Vec<String> = paths.iter().map(|p| slash_path(p.strip_prefix(&settings.root).unwrap_or(p))).collect();
    if let (Some(key), false) = (keys.first(), keys.iter().any(|k| rows.contains_key(k))) {
        let listed = rows.keys().next().map_or("nothing".to_string(), |k| format!("`{k}`"));
        return Err(in_table(format!(
            "lists none of the test images: its `file` column must give each image's path relative to `data.root` \
             (as `{key}`); it lists {listed}"
        )));
    }
    Ok(keys.iter().map(|key| rows.get(key).filter(|v| !v.is_empty()).cloned()).collect())
}

/// The levels of `values`: their bins, else the values themselves (refused when they are
/// many different numbers).
fn binned(subgroup: &Subgroup, values: Vec<Option<String>>) -> Result<Levels, Error> {
    let name = subgroup.name().to_string();
    let age = matches!(&subgroup.source, Source::Tag(t) if t == "PatientAge");
    let number = |v: &str| if age { age_in_years(v) } else { v.trim().parse::<f64>().ok().filter(|x| x.is_finite()) };
    let mut order: Vec<String> = Vec::new();
    let of_image: Vec<String> = match &subgroup.bins {
        Some(bins) => {
            let label = |i: usize| format!("[{}, {})", bins[i], bins[i + 1]);
            order.extend((0..bins.len() - 1).map(label));
            values
                .iter()
                .map(|v| match v.as_deref() {
                    None => NOT_RECORDED.to_string(),
                    Some(v) => match number(v) {
                        None => "not a number".to_string(),
                        Some(x) => bins
                            .windows(2)
                            .position(|w| w[0] <= x && x < w[1])
                            .map_or_else(|| format!("outside [{}, {})", bins[0], bins[bins.len() - 1]), label),
                    },
                })
                .collect()
        }
        None => {
            let numbers: BTreeSet<String> = values.iter().flatten().filter(|v| number(v).is_some()).cloned().collect();
            if let Source::Column { column, .. } = &subgroup.source
                && numbers.len() > MAX_UNBINNED_NUMBERS
            {
                return Err(Error::Subgroup(format!(
                    "{{ column = \"{column}\" }} holds {} different numbers (an age, a measurement?): exact values can \
                     identify a patient; give bins, e.g. {{ column = \"{column}\", bins = [0, 40, 60, 80, 200] }}",
                    numbers.len()
                )));
            }
            values.iter().map(|v| v.clone().unwrap_or_else(|| NOT_RECORDED.to_string())).collect()
        }
    };
    let rest: BTreeSet<&String> = of_image.iter().filter(|l| !order.contains(l) && *l != NOT_RECORDED).collect();
    order.extend(rest.into_iter().cloned());
    if of_image.iter().any(|l| l == NOT_RECORDED) {
        order.push(NOT_RECORDED.to_string());
    }
    Ok(Levels { name, of_image, order })
}

/// A DICOM Age String (`065Y`, `018M`, `010W`, `003D`) in years; a plain number is read
/// as years.
fn age_in_years(value: &str) -> Option<f64> {
    let value = value.trim();
    let (digits, unit) = match value.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&value[..i], c.to_ascii_uppercase()),
        _ => (value, 'Y'),
    };
    let n: f64 = digits.trim().parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    match unit {
        'Y' => Some(n),
        'M' => Some(n / 12.0),
        'W' => Some(n * 7.0 / 365.25),
        'D' => Some(n / 365.25),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, bins: Option<Vec<f64>>) -> Subgroup {
        Subgroup { source: Source::Tag(name.into()), bins }
    }

    #[test]
    fn ages_read_in_every_unit_of_the_age_string() {
        assert_eq!(age_in_years("065Y"), Some(65.0));
        assert_eq!(age_in_years("018M"), Some(1.5));
        assert_eq!(age_in_years("052W"), Some(52.0 * 7.0 / 365.25));
        assert_eq!(age_in_years("365D"), Some(365.0 / 365.25));
        assert_eq!(age_in_years("70"), Some(70.0));
        assert_eq!(age_in_years("Y"), None);
        assert_eq!(age_in_years("12X"), None);
    }

    #[test]
    fn identifying_attributes_are_refused_with_the_reason() {
        let refused = |k: &str| tag(k, None).validate("eval.subgroups").unwrap_err().message;
        assert!(refused("PatientName").contains("identifies a patient"), "{}", refused("PatientName"));
        assert!(refused("StudyInstanceUID").contains("unique identifier"));
        assert!(refused("StudyDate").contains("date or time"));
        assert!(refused("EthnicGroup").contains("not on radrun's list"));
        assert!(refused("PatientSexx").contains("not a DICOM keyword"));
        assert!(refused("PatientAge").contains("only in bins"));
        assert!(tag("PatientAge", Some(vec![0.0, 40.0, 200.0])).validate("k").is_ok());
        assert!(tag("PatientAge", Some(vec![40.0, 40.0])).validate("k").unwrap_err().message.contains("increasing"));
        assert!(tag("Manufacturer", None).validate("k").is_ok());
        let patient = Subgroup { source: Source::Column { column: "patient_id".into(), table: None }, bins: None };
        assert!(patient.validate("k").unwrap_err().message.contains("patients"));
    }

    #[test]
    fn values_go_to_their_half_open_bins_and_the_rest_is_named() {
        let values = ["039Y", "040Y", "079Y", "080Y", "250Y", "old"].map(|v| Some(v.to_string()));
        let mut values = values.to_vec();
        values.push(None);
        let levels = binned(&tag("PatientAge", Some(vec![0.0, 40.0, 80.0])), values).unwrap();
        assert_eq!(
            levels.of_image,
            ["[0, 40)", "[40, 80)", "[40, 80)", "outside [0, 80)", "outside [0, 80)", "not a number", NOT_RECORDED]
        );
        assert_eq!(levels.order, ["[0, 40)", "[40, 80)", "not a number", "outside [0, 80)", NOT_RECORDED]);
    }

    #[test]
    fn a_column_of_many_numbers_needs_bins() {
        let column = Subgroup { source: Source::Column { column: "age".into(), table: None }, bins: None };
        let ages: Vec<Option<String>> = (30..42).map(|a| Some(a.to_string())).collect();
        let error = binned(&column, ages).unwrap_err().to_string();
        assert!(error.contains("12 different numbers") && error.contains("bins"), "{error}");
        let sites: Vec<Option<String>> = ["2", "1", "2", "3"].iter().map(|s| Some(s.to_string())).collect();
        assert_eq!(binned(&column, sites).unwrap().order, ["1", "2", "3"]);
    }

    #[test]
    fn entries_read_and_write_back_in_both_forms() {
        #[derive(Deserialize, Serialize)]
        struct Eval {
            subgroups: Vec<Subgroup>,
        }
        let text = r#"{"subgroups": ["PatientSex", {"tag": "PatientAge", "bins": [0.0, 40.0]},
            {"column": "site", "table": "c.csv"}]}"#;
        let eval: Eval = serde_json::from_str(text).unwrap();
        assert_eq!(eval.subgroups[0], tag("PatientSex", None));
        assert_eq!(eval.subgroups[2].source, Source::Column { column: "site".into(), table: Some("c.csv".into()) });
        let again: Eval = serde_json::from_str(&serde_json::to_string(&eval).unwrap()).unwrap();
        assert_eq!(again.subgroups, eval.subgroups);
        let both = serde_json::from_str::<Eval>(r#"{"subgroups": [{"tag": "Modality", "column": "x"}]}"#);
        assert!(both.err().unwrap().to_string().contains("exactly one"));
        let unknown = serde_json::from_str::<Eval>(r#"{"subgroups": [{"tags": "Modality"}]}"#);
        assert!(unknown.err().unwrap().to_string().contains("unknown field"));
    }
}
