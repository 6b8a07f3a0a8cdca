//! The files of the repository the tests check: rule files, dashboards, deploy files.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The workspace root.
///
/// # Panics
/// Never: the harness crate lives one directory below the root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The text of a file.
///
/// # Panics
/// When it cannot be read, naming the file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML file (`---` separates them), as JSON values.
///
/// # Panics
/// When a document does not parse, naming the file.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// A YAML file of one document.
///
/// # Panics
/// When it does not parse or holds another number of documents.
pub fn yaml(path: &Path) -> Value {
    let mut documents = yaml_documents(path);
    assert_eq!(documents.len(), 1, "{}: one document", path.display());
    documents.remove(0)
}
