//! The decision files import only `plan.rs` and each other, with no cycles.
//! Read from the source itself, so a new import that closes a cycle fails
//! here.

use std::collections::{BTreeMap, BTreeSet};

const FILES: &[(&str, &str)] = &[
    ("mod", include_str!("../mod.rs")),
    ("approval", include_str!("../approval.rs")),
    ("change_sets", include_str!("../change_sets.rs")),
    ("deletion", include_str!("../deletion.rs")),
    ("drift", include_str!("../drift.rs")),
    ("failed_states", include_str!("../failed_states.rs")),
    ("outcome", include_str!("../outcome.rs")),
    ("ownership", include_str!("../ownership.rs")),
    ("refusal", include_str!("../refusal.rs")),
    ("report", include_str!("../report.rs")),
    ("requests", include_str!("../requests.rs")),
    ("stack_events", include_str!("../stack_events.rs")),
    ("timeout", include_str!("../timeout.rs")),
    ("update_stack", include_str!("../update_stack.rs")),
];

/// The code of a file without its tests.
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// Sibling modules a file names through `super::<name>` (and, for
/// `mod.rs`, through `<name>::`).
fn siblings(file: &str, text: &str) -> BTreeSet<&'static str> {
    let text = code(text);
    FILES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != file && *name != "mod")
        .filter(|name| {
            let via_super = text.contains(&format!("super::{name}::")) || text.contains(&format!("super::{name};"));
            let via_mod = file == "mod" && text.contains(&format!("{name}::"));
            via_super || via_mod
        })
        .collect()
}

#[test]
fn decision_files_import_only_plan_and_siblings() {
    for (file, text) in FILES {
        for line in code(text).lines() {
            for (i, _) in line.match_indices("super::super::") {
                let rest = &line[i + "super::super::".len()..];
                assert!(
                    rest.starts_with("plan"),
                    "decide/{file}.rs reaches outside plan.rs: {line}"
                );
            }
            // Group imports would hide siblings from the scan below.
            assert!(
                !line.contains("use super::{"),
                "decide/{file}.rs: import siblings one by one: {line}"
            );
            assert!(
                !line.contains("crate::stack::"),
                "decide/{file}.rs imports the controller: {line}"
            );
        }
    }
}

/// A cycle in `graph`, as the path that closes it.
fn find_cycle<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    // Depth-first search with colours: reaching a node on the path is a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        done: &mut BTreeSet<&'a str>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if path.contains(&node) {
            let mut cycle = path.clone();
            cycle.push(node);
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn decision_files_have_no_import_cycles() {
    let graph: BTreeMap<&str, BTreeSet<&str>> = FILES
        .iter()
        .filter(|(name, _)| *name != "mod")
        .map(|(name, text)| (*name, siblings(name, text)))
        .collect();
    assert_eq!(find_cycle(&graph), None);
    // The scan sees the imports it should (one that found nothing would pass).
    assert!(graph["update_stack"].contains("approval"));
    assert!(graph["change_sets"].contains("update_stack"));
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let graph = BTreeMap::from([
        ("a", BTreeSet::from(["b"])),
        ("b", BTreeSet::from(["c"])),
        ("c", BTreeSet::from(["a"])),
        ("d", BTreeSet::new()),
    ]);
    assert_eq!(find_cycle(&graph), Some(vec!["a", "b", "c", "a"]));
}
