//! Finding where a key path (`collectors.host.processes[1].name`) is written in a YAML text,
//! so that errors found while or after reading a value name its line.
//!
//! Block style is followed key by key and item by item through indentation; a flow mapping
//! or sequence (`{ a: 1, b: [x] }`) is searched within its line. Columns count characters,
//! as the YAML parser's own positions do.

#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(key: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            out.push(Segment::Index(stripped[..end].parse().ok()?));
            rest = &stripped[end + 1..];
        }
    }
    (!out.is_empty()).then_some(out)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#') && trimmed != "---"
}

/// The byte offset in `text` where `key` is written as a mapping key (`key:`, `"key":`), at
/// the start or after a flow or sequence separator.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(key) {
        let start = from + found;
        let before = text[..start].trim_end_matches(['"', '\'']);
        let boundary = before.is_empty()
            || before.ends_with([' ', '{', ',', '-', '\t'])
            || before.ends_with("- ");
        let after = text[start + key.len()..].trim_start_matches(['"', '\'']);
        if boundary && after.trim_start().starts_with(':') {
            return Some(start - (text[..start].len() - before.len()));
        }
        from = start + key.len();
    }
    None
}

/// The byte offset of item `n` of the flow sequence that follows the key in `text`
/// (`key: [a, b]`), when there is one on this line.
fn flow_item(text: &str, n: usize) -> Option<usize> {
    let colon = text.find(':')?;
    let after = &text[colon + 1..];
    let open = colon + 1 + after.find(|c: char| c != ' ')?;
    if !text[open..].starts_with('[') {
        return None;
    }
    let mut depth = 0usize;
    let mut item = 0usize;
    let mut start = open + 1;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i <= open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') if depth == 0 => break,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                if item == n {
                    break;
                }
                item += 1;
                start = i + 1;
            }
            _ => {}
        }
    }
    if item != n {
        return None;
    }
    let skipped = text[start..].len() - text[start..].trim_start().len();
    Some(start + skipped)
}

/// 1-based line and column of `key` in `text`, when it can be found.
pub(super) fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    find(&lines, key).map(|found| position(&lines, found.line, found.column))
}

/// 1-based line and column of `key`, or of the nearest enclosing key or item that is
/// written: where a key that is missing belongs.
pub(super) fn locate_nearest(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut key = key;
    loop {
        if let Some(found) = locate(text, key) {
            return Some(found);
        }
        key = &key[..key.rfind(['.', '['])?];
    }
}

/// The 1-based position of byte `column` of line `line` (0-based), in characters.
fn position(lines: &[&str], line: usize, column: usize) -> (usize, usize) {
    let before = lines
        .get(line)
        .and_then(|l| l.get(..column))
        .map_or(column, |b| b.chars().count());
    (line + 1, before + 1)
}

/// Where a key path is written: 0-based line and column of its key, or of the content of
/// its sequence item (after `- `).
struct Found {
    line: usize,
    column: usize,
    /// Whether the path ends with a sequence index.
    item: bool,
}

fn find(lines: &[&str], key: &str) -> Option<Found> {
    // The first key is a top-level one: at the least indentation of the document.
    let top = lines
        .iter()
        .filter(|l| is_content(l))
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    let mut line = 0;
    let mut column = 0;
    // Lines that belong to the current node are indented more than this.
    let mut parent: Option<usize> = None;
    let mut first = true;
    for segment in segments(key)? {
        match segment {
            Segment::Key(name) => {
                // The key may follow on the same line: a flow mapping, or a sequence item.
                if !first && let Some(offset) = find_key(&lines[line][column..], name) {
                    column += offset;
                    parent = Some(column);
                    continue;
                }
                let start = if first { 0 } else { line + 1 };
                let mut found = false;
                for (i, text_line) in lines.iter().enumerate().skip(start) {
                    if !is_content(text_line) {
                        continue;
                    }
                    let level = indent(text_line);
                    if parent.is_some_and(|p| level <= p) {
                        return None;
                    }
                    if first && level != top {
                        continue;
                    }
                    let trimmed = text_line.trim_start();
                    // At the start of the line, or after an opening flow brace.
                    if let Some(offset) = find_key(trimmed, name)
                        .filter(|&o| trimmed[..o].chars().all(|c| matches!(c, '{' | ' ')))
                    {
                        line = i;
                        column = level + offset;
                        parent = Some(level);
                        found = true;
                        break;
                    }
                }
                if !found {
                    return None;
                }
            }
            Segment::Index(n) => {
                // A flow sequence on the key's own line: `channels: [a, b]`.
                if !first && let Some(offset) = flow_item(&lines[line][column..], n) {
                    column += offset;
                    parent = Some(column);
                    first = false;
                    continue;
                }
                let mut seen = 0;
                let mut dash: Option<usize> = None;
                let mut found = false;
                for (i, text_line) in lines.iter().enumerate().skip(line + 1) {
                    if !is_content(text_line) {
                        continue;
                    }
                    let level = indent(text_line);
                    // A sequence may sit at its key's own indentation.
                    if parent.is_some_and(|p| level < p) {
                        return None;
                    }
                    if !text_line.trim_start().starts_with("- ") && text_line.trim() != "-" {
                        if dash.is_some_and(|d| level <= d) {
                            return None;
                        }
                        continue;
                    }
                    let item = *dash.get_or_insert(level);
                    if level != item {
                        continue;
                    }
                    if seen == n {
                        line = i;
                        // After "- "; a bare "-" has its content on the next lines.
                        column = (level + 2).min(text_line.len());
                        parent = Some(level);
                        found = true;
                        break;
                    }
                    seen += 1;
                }
                if !found {
                    return None;
                }
            }
        }
        first = false;
    }
    let item = matches!(segments(key)?.last(), Some(Segment::Index(_)));
    Some(Found { line, column, item })
}

/// 1-based line and column of the second `field` key of the mapping at `key` (the
/// document's top level when `key` is empty): where a key written twice is repeated.
pub(super) fn locate_repeated(text: &str, key: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut least = 0;
    // The line the mapping starts on, and the column of its first entry when it is there.
    let (line, start) = if key.is_empty() {
        let first = lines.iter().position(|l| is_content(l))?;
        (first, Some(indent(lines[first])))
    } else {
        let found = find(&lines, key)?;
        // Entries of a block mapping on the following lines are indented past this.
        least = if found.item {
            found.column
        } else {
            found.column + 1
        };
        let text_line = lines[found.line];
        let value = if found.item {
            found.column
        } else {
            let colon = found.column + text_line[found.column..].find(':')? + 1;
            colon + (text_line[colon..].len() - text_line[colon..].trim_start().len())
        };
        let rest = text_line.get(value..).unwrap_or_default();
        let on_line = !(rest.is_empty() || rest.starts_with('#'));
        (found.line, on_line.then_some(value))
    };
    let mut seen = 0;
    let mut second = |line: usize, column: usize| {
        seen += 1;
        (seen == 2).then_some(position(&lines, line, column))
    };
    let entries = match start {
        // A flow mapping: searched within its line.
        Some(column) if lines[line][column..].starts_with('{') => {
            let mut from = column;
            while let Some(offset) = find_key(&lines[line][from..], field) {
                if let Some(found) = second(line, from + offset) {
                    return Some(found);
                }
                from += offset + field.len();
            }
            return None;
        }
        Some(column) => {
            if find_key(&lines[line][column..], field) == Some(0)
                && let Some(found) = second(line, column)
            {
                return Some(found);
            }
            column
        }
        // A block mapping on the following lines, at the indentation of its first entry.
        None => Some(indent(lines.iter().skip(line + 1).find(|l| is_content(l))?))
            .filter(|&level| level >= least)?,
    };
    for (i, text_line) in lines.iter().enumerate().skip(line + 1) {
        if !is_content(text_line) {
            continue;
        }
        let level = indent(text_line);
        if level < entries {
            break;
        }
        if level == entries
            && find_key(text_line.trim_start(), field) == Some(0)
            && let Some(found) = second(i, level)
        {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_is_a_top_level_one() {
        let text = "channels:\n  hook:\n    templates: {}\ntemplates:\n  title: x\n";
        assert_eq!(locate(text, "templates.title"), Some((5, 3)));
    }

    #[test]
    fn flow_sequence_items() {
        let text =
            "route:\n  routes:\n    - matchers: ['a=\"x,y\"']\n      channels: [pager, chat]\n";
        assert_eq!(locate(text, "route.routes[0].channels[1]"), Some((4, 25)));
        assert_eq!(locate(text, "route.routes[0].matchers[0]"), Some((3, 18)));
        assert_eq!(locate(text, "route.routes[0].channels[2]"), None);
    }

    const CONFIG: &str = "\
# mcpwatch
collectors:
  host:
    enabled: true
    processes:
    - name: daemon
      comm: python3
    - name: worker   # second
      cmdline: 'w.*'
  postgres:
    - name: main
      dsn_file: /run/secrets/pg
scrape:
  timeout: 10s
";

    #[test]
    fn splits_key_paths() {
        assert_eq!(
            segments("a.b[2].c").expect("segments"),
            [
                Segment::Key("a"),
                Segment::Key("b"),
                Segment::Index(2),
                Segment::Key("c")
            ]
        );
        assert_eq!(segments("").map(|s| s.len()), None);
    }

    #[test]
    fn follows_blocks_and_sequences() {
        assert_eq!(locate(CONFIG, "collectors.host.enabled"), Some((4, 5)));
        assert_eq!(
            locate(CONFIG, "collectors.host.processes[0].name"),
            Some((6, 7))
        );
        assert_eq!(locate(CONFIG, "collectors.host.processes[1]"), Some((8, 7)));
        assert_eq!(
            locate(CONFIG, "collectors.host.processes[1].cmdline"),
            Some((9, 7))
        );
        assert_eq!(
            locate(CONFIG, "collectors.postgres[0].dsn_file"),
            Some((12, 7))
        );
        assert_eq!(locate(CONFIG, "scrape.timeout"), Some((14, 3)));
        assert_eq!(locate(CONFIG, "scrape.bogus"), None);
        assert_eq!(locate(CONFIG, "collectors.host.processes[2]"), None);
        // "timeout" exists, but not under collectors.host.
        assert_eq!(locate(CONFIG, "collectors.host.timeout"), None);
    }

    #[test]
    fn columns_count_characters() {
        let text = "a: {x: \"\u{e9}\u{e9}\u{e9}\", b: 1, b: 2}\nc:\n  - \u{e9}: 1\n    d: 2\n";
        assert_eq!(locate(text, "a.b"), Some((1, 15)));
        assert_eq!(locate_repeated(text, "a", "b"), Some((1, 21)));
        assert_eq!(locate(text, "c[0].d"), Some((4, 5)));
    }

    #[test]
    fn a_missing_key_is_placed_at_what_encloses_it() {
        assert_eq!(
            locate_nearest(CONFIG, "collectors.postgres[0].dsn"),
            Some((11, 7))
        );
        assert_eq!(
            locate_nearest(CONFIG, "collectors.host.processes[1].pid_file"),
            Some((8, 7))
        );
        assert_eq!(
            locate_nearest(CONFIG, "collectors.redis[0].url"),
            Some((2, 1))
        );
        assert_eq!(locate_nearest(CONFIG, "scrape.timeout"), Some((14, 3)));
        assert_eq!(locate_nearest(CONFIG, "storage.path"), None);
    }

    #[test]
    fn repeated_keys_at_every_level() {
        let text = "\
a: 1
b:
  x: 1
  list:
    - name: p
      name: q
    -
      name: r
      other:
        name: inner
      name: s
  x: 2
c: {y: 1, y: 2}
a: 3
";
        assert_eq!(locate_repeated(text, "", "a"), Some((14, 1)));
        assert_eq!(locate_repeated(text, "b", "x"), Some((12, 3)));
        assert_eq!(locate_repeated(text, "b.list[0]", "name"), Some((6, 7)));
        // The nested `name` belongs to another mapping.
        assert_eq!(locate_repeated(text, "b.list[1]", "name"), Some((11, 7)));
        assert_eq!(locate_repeated(text, "c", "y"), Some((13, 11)));
        assert_eq!(locate_repeated(text, "b.list[1].other", "name"), None);
        assert_eq!(locate_repeated(text, "b", "list"), None);
        assert_eq!(locate_repeated("a:\nb: 1\nb: 2\n", "a", "b"), None);
        for text in ["", "-", "a:", "{", "a: {", "- - x\n"] {
            for key in ["", "a", "a[0]"] {
                let _ = locate_repeated(text, key, "x");
            }
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let bare_dash =
            "collectors:\n  host:\n    processes:\n    -\n      name: \"\"\n      comm: x\n";
        assert_eq!(
            locate(bare_dash, "collectors.host.processes[0].name"),
            Some((5, 7))
        );
        for text in [
            "\u{3000}a: 1\n",
            "-",
            "a:",
            "a:\n  - \u{e9}:\n",
            "\t- x\n",
            "[[[",
            "",
        ] {
            for key in ["a", "a[0]", "a[0].b", "a.b.c", "x[3]"] {
                let _ = locate(text, key);
            }
        }
    }

    #[test]
    fn searches_flow_style_within_the_line() {
        let text = "collectors:\n  host: { enabled: true, mountpoints_exclude: \"x\" }\n";
        assert_eq!(
            locate(text, "collectors.host.mountpoints_exclude"),
            Some((2, 26))
        );
        let text = "{scrape: {timeout: soon}}\n";
        assert_eq!(locate(text, "scrape.timeout"), Some((1, 11)));
    }
}
