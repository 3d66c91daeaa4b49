//! The flow graph of a workload: inbound clients → the pod's processes →
//! outbound peers, edges labelled with ports, protocols, HTTP and counts.
//! DOT for graphviz users; SVG with a built-in three-column layout so no
//! graphviz install is needed.

use std::collections::BTreeMap;
use std::fmt::Write;

use podwarden_policy::model::PolicyDocument;
use podwarden_policy::Direction;

use super::ports_text;
use crate::diff::peer_text;

const UNKNOWN_PROCESS: &str = "(process unknown)";

#[derive(Debug, Default)]
struct Graph {
    clients: Vec<String>,
    processes: Vec<String>,
    peers: Vec<String>,
    /// (from, to) → label lines and total count.
    edges: BTreeMap<(String, String), (Vec<String>, u64)>,
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn build(doc: &PolicyDocument) -> Graph {
    let mut g = Graph::default();
    for p in &doc.spec.processes {
        push_unique(&mut g.processes, &p.exe);
    }
    for r in &doc.spec.rules {
        let peer = peer_text(&r.peer);
        let mut label = format!(
            "{} {}",
            ports_text(&r.ports),
            r.protocols
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )
        .trim()
        .to_string();
        if let Some(h) = &r.http {
            let m = if h.methods.is_empty() {
                "*".to_string()
            } else {
                h.methods.join(",")
            };
            for p in &h.paths {
                label.push_str(&format!("\n{m} {p}"));
            }
            if h.paths.is_empty() {
                label.push_str(&format!("\n{m} *"));
            }
        }
        let count = r.evidence.as_ref().map(|e| e.count).unwrap_or(0);
        let procs: Vec<&str> = if r.processes.is_empty() {
            vec![UNKNOWN_PROCESS]
        } else {
            r.processes.iter().map(String::as_str).collect()
        };
        for exe in procs {
            push_unique(&mut g.processes, exe);
            let key = match r.direction {
                Direction::Outbound => {
                    push_unique(&mut g.peers, &peer);
                    (exe.to_string(), peer.clone())
                }
                Direction::Inbound => {
                    push_unique(&mut g.clients, &peer);
                    (peer.clone(), exe.to_string())
                }
            };
            let e = g.edges.entry(key).or_default();
            e.0.extend(label.lines().map(String::from));
            e.1 += count;
        }
    }
    g.clients.sort();
    g.processes.sort();
    g.peers.sort();
    g
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Graphviz DOT of the workload's flows.
pub fn dot(doc: &PolicyDocument) -> String {
    let g = build(doc);
    let mut o = String::new();
    let _ = writeln!(o, "digraph \"{}\" {{", dot_escape(&doc.metadata.workload));
    let _ = writeln!(o, "  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];");
    for c in &g.clients {
        let _ = writeln!(
            o,
            "  \"c:{0}\" [label=\"{0}\", shape=box, style=rounded];",
            dot_escape(c)
        );
    }
    let _ = writeln!(
        o,
        "  subgraph cluster_pod {{\n    label=\"pod {}\";\n    style=rounded;",
        dot_escape(&doc.metadata.workload)
    );
    for p in &g.processes {
        let _ = writeln!(
            o,
            "    \"p:{0}\" [label=\"{0}\", shape=component];",
            dot_escape(p)
        );
    }
    let _ = writeln!(o, "  }}");
    for p in &g.peers {
        let _ = writeln!(
            o,
            "  \"s:{0}\" [label=\"{0}\", shape=ellipse];",
            dot_escape(p)
        );
    }
    for ((from, to), (labels, count)) in &g.edges {
        let (f, t) = if g.clients.contains(from)
            && g.processes.contains(to)
            && !g.processes.contains(from)
        {
            (format!("c:{from}"), format!("p:{to}"))
        } else {
            (format!("p:{from}"), format!("s:{to}"))
        };
        let mut label = labels.join("\n");
        if *count > 0 {
            label.push_str(&format!("\n({count} flows)"));
        }
        let _ = writeln!(
            o,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            dot_escape(&f),
            dot_escape(&t),
            dot_escape(&label)
        );
    }
    o.push_str("}\n");
    o
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COL_W: f64 = 250.0;
const GAP_W: f64 = 300.0;
const MIN_ROW_H: f64 = 70.0;
const LINE_H: f64 = 12.0;
const BOX_H: f64 = 36.0;
const MARGIN: f64 = 40.0;
const MAX_LABEL_LINES: usize = 6;

/// Label lines for the edges at one node: grouped there (by the target for
/// outbound edges, by the client for inbound ones) where edges have fanned
/// out, so labels of different edges never share space.
fn label_blocks(g: &Graph) -> BTreeMap<(usize, String), Vec<String>> {
    let mut blocks: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    let basename = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    for ((from, to), (labels, count)) in &g.edges {
        let inbound = g.clients.contains(from) && !g.processes.contains(from);
        let (key, other) = if inbound {
            ((0, from.clone()), to)
        } else {
            ((2, to.clone()), from)
        };
        let block = blocks.entry(key).or_default();
        let many = g
            .edges
            .keys()
            .filter(|(f, t)| if inbound { f == from } else { t == to })
            .count()
            > 1;
        let mut lines: Vec<String> = labels.iter().take(MAX_LABEL_LINES).cloned().collect();
        if labels.len() > MAX_LABEL_LINES {
            lines.push(format!("… {} more", labels.len() - MAX_LABEL_LINES));
        }
        if let Some(first) = lines.first_mut() {
            if *count > 0 {
                first.push_str(&format!(
                    " · {count} flow{}",
                    if *count == 1 { "" } else { "s" }
                ));
            }
            if many {
                *first = format!("{}: {first}", basename(other));
            }
        }
        block.extend(lines);
    }
    blocks
}

/// A self-contained SVG: clients left, the pod's processes in the middle,
/// peers right; one row per node, edges as curves, labels next to the node
/// where the edge fans out.
pub fn svg(doc: &PolicyDocument) -> String {
    let g = build(doc);
    let blocks = label_blocks(&g);
    let tallest = blocks.values().map(Vec::len).max().unwrap_or(0) as f64;
    let row_h = MIN_ROW_H.max(tallest * LINE_H + BOX_H / 2.0 + 16.0);
    let rows = g
        .clients
        .len()
        .max(g.processes.len())
        .max(g.peers.len())
        .max(1);
    let width = MARGIN * 2.0 + COL_W * 3.0 + GAP_W * 2.0;
    let top = MARGIN + 40.0 + row_h - BOX_H - 8.0;
    let height = top + rows as f64 * row_h + MARGIN;
    let col_x = |c: usize| MARGIN + c as f64 * (COL_W + GAP_W);
    let row_y = |i: usize, n: usize| {
        // centre shorter columns vertically
        let offset = (rows - n) as f64 * row_h / 2.0;
        top + offset + i as f64 * row_h
    };
    let pos = |col: usize, list: &Vec<String>, name: &str| {
        list.iter()
            .position(|x| x == name)
            .map(|i| (col_x(col), row_y(i, list.len())))
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"Helvetica, Arial, sans-serif\">"
    );
    let _ = writeln!(
        o,
        "<title>{}</title>",
        xml_escape(&format!("flows of {}", doc.metadata.workload))
    );
    let _ = writeln!(o, "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>");
    let _ = writeln!(o, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    for (c, title) in ["inbound clients", "pod processes", "outbound peers"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\" text-anchor=\"middle\">{title}</text>",
            col_x(c) + COL_W / 2.0,
            MARGIN + 10.0
        );
    }
    // the pod box around the middle column
    let _ = writeln!(
        o,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"12\" fill=\"#f3f7ff\" stroke=\"#7a9cd6\" stroke-dasharray=\"6 4\"/>",
        col_x(1) - 15.0,
        MARGIN + 22.0,
        COL_W + 30.0,
        height - MARGIN - 22.0 - 10.0
    );
    for (from, to) in g.edges.keys() {
        let (a, b) = match (pos(0, &g.clients, from), pos(1, &g.processes, to)) {
            (Some(a), Some(b)) => (a, b),
            _ => match (pos(1, &g.processes, from), pos(2, &g.peers, to)) {
                (Some(a), Some(b)) => (a, b),
                _ => continue,
            },
        };
        let (x1, y1) = (a.0 + COL_W, a.1 + BOX_H / 2.0);
        let (x2, y2) = (b.0, b.1 + BOX_H / 2.0);
        let mx = (x1 + x2) / 2.0;
        let _ = writeln!(
            o,
            "<path d=\"M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}\" fill=\"none\" stroke=\"#555\" stroke-width=\"1.3\" marker-end=\"url(#arrow)\"/>"
        );
    }
    for ((col, node), lines) in &blocks {
        let (x, anchor, y_end) = match col {
            0 => match pos(0, &g.clients, node) {
                Some((x, y)) => (x + COL_W + 8.0, "start", y + BOX_H / 2.0 - 5.0),
                None => continue,
            },
            _ => match pos(2, &g.peers, node) {
                Some((x, y)) => (x - 12.0, "end", y + BOX_H / 2.0 - 5.0),
                None => continue,
            },
        };
        let n = lines.len() as f64;
        for (i, l) in lines.iter().enumerate() {
            let _ = writeln!(
                o,
                "<text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"{anchor}\" fill=\"#333\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
                y_end - (n - 1.0 - i as f64) * LINE_H,
                xml_escape(l)
            );
        }
    }
    let boxes = [
        (0usize, &g.clients, "#fff7e6", "#d69a2d"),
        (1, &g.processes, "#ffffff", "#3d6bb3"),
        (2, &g.peers, "#eefaf0", "#3a9a52"),
    ];
    for (col, list, fill, stroke) in boxes {
        for (i, name) in list.iter().enumerate() {
            let (x, y) = (col_x(col), row_y(i, list.len()));
            let _ = writeln!(
                o,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{COL_W}\" height=\"{BOX_H}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\"/>"
            );
            let shown: String = if name.chars().count() > 40 {
                format!(
                    "…{}",
                    name.chars()
                        .rev()
                        .take(38)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<String>()
                )
            } else {
                name.clone()
            };
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}<title>{}</title></text>",
                x + COL_W / 2.0,
                y + BOX_H / 2.0 + 4.0,
                xml_escape(&shown),
                xml_escape(name)
            );
        }
    }
    o.push_str("</svg>\n");
    o
}
