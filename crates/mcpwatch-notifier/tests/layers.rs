//! The notifier's modules depend one way: the model (payload, times, matchers), then the
//! configuration, then what it configures (routing, incidents, templates, channels,
//! maintenance windows), then the store, then delivery and the server, and last the
//! crate root, which re-exports the public API. Each module may use
//! only the modules before it in [`ORDER`]; this test reads the sources and names every use
//! that goes the other way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules, each after everything it uses. `crate` is the crate root (`lib.rs`).
const ORDER: &[&str] = &[
    // The model.
    "time",
    "ical",
    "timeinterval",
    "ack",
    "payload",
    "matcher",
    "severity",
    "statuspage",
    "timeline",
    // The configuration.
    "config",
    "schedule",
    // What it configures.
    "route",
    "incident",
    "report",
    "template",
    "channels",
    "maintenance",
    "remediation",
    // The store.
    "store",
    "metrics",
    // Delivery and the server.
    "setup",
    "dispatch",
    "notifier",
    "server",
    // The public API: what the crate root re-exports, and its two functions.
    "crate",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file belongs to: `src/x.rs` and `src/x/*.rs` are `x`, `lib.rs` is
/// the root; `main.rs` is the binary, a user of the library like any other.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_owned();
    match first.as_str() {
        "lib.rs" => Some("crate".into()),
        "main.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// What `crate::` paths in `code` reach: a module's name, or `crate` for an item of the
/// root. Grouped imports (`use crate::{a::X, Y}`) count each member.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut depth = 0;
            let mut member = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(target(member.trim()));
                        member.clear();
                        continue;
                    }
                    _ => {}
                }
                member.push(c);
            }
            found.remove("");
            continue;
        }
        found.insert(target(rest));
    }
    found
}

/// The module a path after `crate::` names: its first segment when that is a module, else
/// the root.
fn target(path: &str) -> String {
    let segment: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if segment.is_empty() {
        return String::new();
    }
    let followed = path[segment.len()..].trim_start().starts_with("::");
    if ORDER.contains(&segment.as_str()) && (followed || segment.starts_with(char::is_lowercase)) {
        segment
    } else {
        "crate".into()
    }
}

/// The code of a file without its comments (doc links are no dependency).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn modules_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let rank = ORDER
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("{}: module {module} is not in ORDER", file.display()));
        seen.insert(module.clone());
        let text = std::fs::read_to_string(file).expect("read");
        for used in uses(&code(&text)) {
            if used == module {
                continue;
            }
            let used_rank = ORDER
                .iter()
                .position(|m| *m == used)
                .unwrap_or_else(|| panic!("{}: uses unknown module {used}", file.display()));
            if used_rank > rank {
                wrong.push(format!(
                    "{} ({module}) uses {used}, which comes after it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every module listed exists: the order is kept up to date.
    let listed: BTreeSet<String> = ORDER.iter().map(|m| (*m).to_owned()).collect();
    assert_eq!(seen, listed);
}

#[test]
fn the_reader_of_uses_finds_grouped_and_nested_paths() {
    let found = uses(
        "use crate::{Answer, store::{Body, sql}, config::X};\nlet x = crate::time::now_ms();\n\
         crate::refresh_windows(a); my_crate::ignored();",
    );
    let expected: BTreeSet<String> = ["crate", "store", "config", "time"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
    assert_eq!(code("let a = 1; // crate::server"), "let a = 1; ");
}
