//! `classes.json`: the class names of a dataset directory, index = label.
//!
//! `nas data from-pcap` writes it (`{"classes": ["chat", "email", ...], ...}`); `data inspect`,
//! `search` and the report show the names when it is present. A plain JSON array of names is
//! accepted too, for files written by hand.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The file name inside a dataset directory.
pub const CLASSES_FILE: &str = "classes.json";

#[derive(Deserialize)]
#[serde(untagged)]
enum ClassesFile {
    Object { classes: Vec<String> },
    List(Vec<String>),
}

/// The class names of the dataset in `dir`, or `None` when it has no `classes.json`. A file
/// that is present but unreadable or malformed is an error naming it.
pub fn read_class_names(dir: &Path) -> Result<Option<Vec<String>>> {
    let path = dir.join(CLASSES_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let parsed: ClassesFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a list of class names (expected {{\"classes\": [\"name\", ...]}})",
            path.display()
        )
    })?;
    let names = match parsed {
        ClassesFile::Object { classes } => classes,
        ClassesFile::List(v) => v,
    };
    if names.is_empty() || names.len() > super::MAX_CLASSES {
        bail!(
            "{} names {} classes; a dataset has 1..={}",
            path.display(),
            names.len(),
            super::MAX_CLASSES
        );
    }
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_read_both_forms_and_name_a_bad_file() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_class_names(d.path()).unwrap(), None);
        std::fs::write(
            d.path().join(CLASSES_FILE),
            r#"{"classes": ["a", "b"], "x": 1}"#,
        )
        .unwrap();
        assert_eq!(
            read_class_names(d.path()).unwrap(),
            Some(vec!["a".into(), "b".into()])
        );
        std::fs::write(d.path().join(CLASSES_FILE), r#"["c"]"#).unwrap();
        assert_eq!(read_class_names(d.path()).unwrap(), Some(vec!["c".into()]));
        std::fs::write(d.path().join(CLASSES_FILE), "{oops").unwrap();
        let e = format!("{:#}", read_class_names(d.path()).unwrap_err());
        assert!(e.contains("classes.json"), "{e}");
    }
}
