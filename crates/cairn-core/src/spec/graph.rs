//! The dependency graph: step names and ids checked for clashes, `depends`
//! resolved to step indices, cycles found and named, and the order in which
//! the steps can run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::error::did_you_mean;
use super::model::StepIndex;
use super::step::Draft;
use super::yaml::{Diags, join};

/// Checks names and ids, adds the written `depends` to each step's
/// dependencies, and returns the run order; empty when a cycle makes one impossible.
pub(crate) fn link(drafts: &mut [Draft], d: &mut Diags) -> Vec<StepIndex> {
    check_names(drafts, d);

    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for (i, draft) in drafts.iter().enumerate() {
        by_key.entry(draft.step.name.as_str()).or_insert(i);
    }
    for (i, draft) in drafts.iter().enumerate() {
        if let Some(id) = draft.step.id.as_deref() {
            by_key.entry(id).or_insert(i);
        }
    }
    let keys: Vec<String> = by_key.keys().map(|k| (*k).to_owned()).collect();
    let mut resolved: Vec<Vec<StepIndex>> = Vec::with_capacity(drafts.len());
    for draft in drafts.iter() {
        let mut deps = Vec::new();
        for name in &draft.depends {
            match by_key.get(name.as_str()) {
                Some(&j) => deps.push(StepIndex(j)),
                None => d.error_hint(
                    draft.depends_pos.flatten(),
                    &join(&draft.path, "depends"),
                    format!("unknown step \"{name}\""),
                    did_you_mean(name, keys.iter().map(String::as_str))
                        .or_else(|| Some("name a step of this workflow, by its name or id".to_owned())),
                ),
            }
        }
        resolved.push(deps);
    }
    for (draft, deps) in drafts.iter_mut().zip(resolved) {
        for dep in deps {
            if !draft.step.depends.contains(&dep) {
                draft.step.depends.push(dep);
            }
        }
    }

    if report_cycles(drafts, d) { Vec::new() } else { run_order(drafts) }
}

fn check_names(drafts: &[Draft], d: &mut Diags) {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for draft in drafts {
        let name = draft.step.name.as_str();
        if let Some(first) = names.get(name) {
            d.error_hint(
                draft.step.pos,
                &draft.path,
                format!("duplicate step name \"{name}\""),
                format!("{first} has it too; step names must be unique"),
            );
        } else {
            names.insert(name, &draft.path);
        }
    }
    let mut ids: HashMap<&str, &str> = HashMap::new();
    for draft in drafts {
        let Some(id) = draft.step.id.as_deref() else { continue };
        let path = join(&draft.path, "id");
        if let Some(first) = ids.get(id) {
            d.error_hint(
                draft.step.pos,
                &path,
                format!("duplicate step id \"{id}\""),
                format!("{first} has it too; step ids must be unique"),
            );
            continue;
        }
        ids.insert(id, &draft.path);
        if let Some(other) = names.get(id)
            && *other != draft.path
        {
            d.error_hint(
                draft.step.pos,
                &path,
                format!("step id \"{id}\" is the name of another step"),
                format!("{other} is named \"{id}\"; `depends` could not tell them apart"),
            );
        }
    }
}

/// Reports each dependency cycle once, as `a -> b -> a` (each step depends
/// on the next); true when there was one.
fn report_cycles(drafts: &[Draft], d: &mut Diags) -> bool {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..drafts.len()).map(|i| g.add_node(i)).collect();
    for (i, draft) in drafts.iter().enumerate() {
        for dep in &draft.step.depends {
            g.add_edge(nodes[i], nodes[dep.0], ());
        }
    }
    let mut found = false;
    let mut sccs: Vec<Vec<usize>> =
        tarjan_scc(&g).into_iter().map(|scc| scc.into_iter().map(|n| g[n]).collect()).collect();
    for scc in &mut sccs {
        scc.sort_unstable();
    }
    sccs.sort();
    for scc in sccs {
        let start = scc[0];
        let looped = scc.len() > 1 || drafts[start].step.depends.contains(&StepIndex(start));
        if !looped {
            continue;
        }
        found = true;
        let cycle = shortest_cycle(drafts, start, &scc);
        let names: Vec<&str> = cycle.iter().map(|&i| drafts[i].step.name.as_str()).collect();
        let draft = &drafts[start];
        d.error_hint(
            draft.depends_pos.flatten().or(draft.step.pos),
            &join(&draft.path, "depends"),
            format!("dependency cycle: {}", names.join(" -> ")),
            "each step depends on the next; remove one of these dependencies".to_owned(),
        );
    }
    found
}

/// The shortest path of dependencies from `start` back to itself, within `scc`.
fn shortest_cycle(drafts: &[Draft], start: usize, scc: &[usize]) -> Vec<usize> {
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(cur) = queue.pop_front() {
        for dep in &drafts[cur].step.depends {
            let next = dep.0;
            if !scc.contains(&next) {
                continue;
            }
            if next == start {
                let mut path = vec![cur];
                let mut at = cur;
                while at != start {
                    at = prev[&at];
                    path.push(at);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if next != start && !prev.contains_key(&next) {
                prev.insert(next, cur);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

/// Kahn's algorithm, taking the lowest index among the ready steps so
/// independent steps keep file order.
fn run_order(drafts: &[Draft]) -> Vec<StepIndex> {
    let n = drafts.len();
    let mut waiting: Vec<usize> = drafts.iter().map(|dr| dr.step.depends.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, draft) in drafts.iter().enumerate() {
        for dep in &draft.step.depends {
            dependents[dep.0].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(StepIndex(i));
        for &j in &dependents[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    order
}
