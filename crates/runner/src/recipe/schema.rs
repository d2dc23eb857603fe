//! The recipe's JSON Schema (draft 2020-12), derived with schemars from the types that
//! parse recipes, so it cannot drift from what `radrun` accepts: every key with its doc
//! comment as description, its default, its allowed values and ranges. Editors read it
//! through the `#:schema` line that starts each recipe (taplo, Even Better TOML).
//!
//! The schema checks the shape of one recipe file; what needs the data or other keys
//! (a class folder that exists, a patch size the U-Net can pool) is checked by `radrun
//! plan`, which names the line.

use std::sync::LazyLock;

use regex::Regex;
use schemars::Schema;
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;

use super::Recipe;

/// The schema, as `radrun schema` prints it (pretty JSON, a final newline).
pub fn recipe_schema() -> String {
    let generator = SchemaSettings::draft2020_12()
        .with_transform(RecursiveTransform(without_null))
        .with_transform(RecursiveTransform(readable_descriptions))
        .into_generator();
    let mut schema = generator.into_root_schema_for::<Recipe>();
    schema.insert("title".into(), "radrun recipe".into());
    schema.insert(
        "description".into(),
        "A radrun recipe: the data, the model, the training and the evaluation of one or more runs \
         (`radrun plan RECIPE` shows them; docs/recipes.md explains every key)."
            .into(),
    );
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}

/// TOML has no null: an optional key is left out, never written as null, so the `null`
/// schemars allows for an `Option` is taken out again.
fn without_null(schema: &mut Schema) {
    use serde_json::Value;
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            schema.insert("type".into(), only);
        }
    }
    let Some(Value::Array(choices)) = schema.get_mut("anyOf") else { return };
    choices.retain(|choice| choice.get("type").is_none_or(|t| t != "null"));
    if let [Value::Object(only)] = choices.as_slice() {
        let only = only.clone();
        schema.remove("anyOf");
        for (key, value) in only {
            schema.insert(key, value);
        }
    }
}

/// The descriptions are the code's doc comments, written for rustdoc: a pointer to
/// another type (`see [`Resize`]`) is left out, since the editor shows that type's values
/// with the key, and other links keep their text; the comment's line breaks become spaces.
fn readable_descriptions(schema: &mut Schema) {
    static POINTER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(: see \[`[^`]+`\](?P<stop>\.)|;? see \[`[^`]+`\]| ?\((see )?\[`[^`]+`\](\([^)]*\))?\))")
            .expect("a valid pattern")
    });
    static LINK: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\[`(?:[a-z_]+::)*(?P<name>[^`]+)`\](\([^)]*\))?").expect("a valid pattern"));
    let Some(serde_json::Value::String(text)) = schema.get_mut("description") else { return };
    let one_line = text.replace('\n', " ");
    let without_pointers = POINTER.replace_all(&one_line, "$stop");
    *text = LINK.replace_all(&without_pointers, "`$name`").into_owned();
}
