//! Report renderings: a fixed-width text table and a self-contained HTML
//! page (inline CSS, no scripts, no external resources). JSON is the
//! report's `Serialize`.

use std::fmt::Write as _;

use super::controls::{Control, Report, CONTROLS};

fn short(c: Control) -> &'static str {
    match c {
        Control::NetworkSegmentation => "SEGMENT",
        Control::Waf => "WAF",
        Control::Dlp => "DLP",
        Control::EventsExported => "EVENTS",
        Control::BaselineReviewed => "REVIEWED",
    }
}

/// One row per workload, one column per control.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let wl_width = r
        .workloads
        .iter()
        .map(|w| w.namespace.len() + 1 + w.workload.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = write!(out, "{:<wl_width$}", "WORKLOAD");
    for c in CONTROLS {
        let _ = write!(out, "  {:<9}", short(c.control));
    }
    out.push('\n');
    for w in &r.workloads {
        let _ = write!(
            out,
            "{:<wl_width$}",
            format!("{}/{}", w.namespace, w.workload)
        );
        for res in &w.results {
            let _ = write!(out, "  {:<9}", res.outcome.as_str());
        }
        out.push('\n');
    }
    let (p, q, f) = r.totals();
    let _ = writeln!(
        out,
        "\n{p} pass, {q} partial, {f} fail (approvals older than {} days fail)",
        r.max_review_age_days
    );
    if !r.uncovered_namespaces.is_empty() {
        let _ = writeln!(
            out,
            "namespaces without any injected workload: {}",
            r.uncovered_namespaces.join(", ")
        );
    }
    out.push_str("\ncontrols:\n");
    for c in CONTROLS {
        let _ = writeln!(
            out,
            "  {:<9} {}\n            PCI DSS {} | SOC 2 {} | GDPR {} | HIPAA {}",
            short(c.control),
            c.title,
            c.pci_dss.join(", "),
            c.soc2.join(", "),
            c.gdpr.join(", "),
            c.hipaa.join(", ")
        );
    }
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A page a person reads: summary, the per-workload matrix with reasons on
/// hover and in full below, and the framework mapping.
pub fn html(r: &Report) -> String {
    let (p, q, f) = r.totals();
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>podwarden compliance report</title>\n<style>\n");
    h.push_str(
        "body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330}\
         table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccd;padding:.35rem .6rem;text-align:left;vertical-align:top}\
         th{background:#eef}.pass{background:#d9f2dd}.partial{background:#fff1c2}.fail{background:#f8d4d4}\
         .summary span{display:inline-block;margin-right:1rem;padding:.3rem .7rem;border-radius:4px}\
         small{color:#555}\n",
    );
    h.push_str("</style></head><body>\n<h1>podwarden compliance report</h1>\n");
    let _ = writeln!(
        h,
        "<p>Cluster state at <b>{}</b>. Approvals older than {} days do not count as reviewed.</p>",
        esc(&r.taken_at),
        r.max_review_age_days
    );
    let _ = writeln!(
        h,
        "<p class=\"summary\"><span class=\"pass\">{p} pass</span><span class=\"partial\">{q} partial</span><span class=\"fail\">{f} fail</span></p>"
    );
    if !r.uncovered_namespaces.is_empty() {
        let _ = writeln!(
            h,
            "<p><b>Namespaces without any injected workload:</b> {}</p>",
            esc(&r.uncovered_namespaces.join(", "))
        );
    }
    h.push_str("<h2>Workloads</h2>\n<table><tr><th>Namespace</th><th>Workload</th>");
    for c in CONTROLS {
        let _ = write!(h, "<th>{}</th>", esc(short(c.control)));
    }
    h.push_str("</tr>\n");
    for w in &r.workloads {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td>",
            esc(&w.namespace),
            esc(&w.workload)
        );
        for res in &w.results {
            let class = res.outcome.as_str();
            let _ = write!(
                h,
                "<td class=\"{class}\" title=\"{}\">{}<br><small>{}</small></td>",
                esc(&res.reason),
                class,
                esc(&res.reason)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<h2>Controls and framework requirements</h2>\n<table><tr><th>Control</th><th>What holds</th><th>PCI DSS v4.0</th><th>SOC 2</th><th>GDPR</th><th>HIPAA</th></tr>\n");
    for c in CONTROLS {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(short(c.control)),
            esc(c.title),
            esc(&c.pci_dss.join(", ")),
            esc(&c.soc2.join(", ")),
            esc(&c.gdpr.join(", ")),
            esc(&c.hipaa.join(", "))
        );
    }
    h.push_str("</table>\n<p><small>Pass: the control holds. Partial: detected but not prevented (monitor mode). Fail: not in place. A control supports the listed requirements; it does not by itself satisfy them.</small></p>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::super::{evaluate, ClusterSnapshot, NamespaceState, WorkloadState};
    use super::*;
    use podwarden_policy::Mode;

    fn report() -> Report {
        let w = WorkloadState {
            name: "Deployment/<script>".into(),
            pods: 1,
            injected_pods: 1,
            network_mode: Some(Mode::Protect),
            waf_mode: Some(Mode::Monitor),
            dlp_mode: None,
            events_exported: false,
            approved_at: Some("2026-11-01T00:00:00Z".into()),
            policy_version: Some(1),
        };
        let snap = ClusterSnapshot {
            taken_at: "2026-11-23T00:00:00Z".into(),
            namespaces: vec![NamespaceState {
                name: "shop".into(),
                injection_enabled: true,
                workloads: vec![w],
            }],
        };
        evaluate(&snap, 90)
    }

    #[test]
    fn table_has_a_row_per_workload_and_the_totals() {
        let t = table(&report());
        let row = t.lines().find(|l| l.starts_with("shop/")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..], ["pass", "partial", "fail", "fail", "pass"]);
        assert!(t.contains("2 pass, 1 partial, 2 fail"), "{t}");
        assert!(t.contains("PCI DSS 1.2.1"), "{t}");
    }

    #[test]
    fn html_is_escaped_and_self_contained() {
        let h = html(&report());
        assert!(h.contains("Deployment/&lt;script&gt;"));
        assert!(!h.contains("<script>"));
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "no external resources"
        );
        assert_eq!(h.matches("<tr>").count(), 1 + 1 + 1 + CONTROLS.len());
        assert!(h.contains("class=\"partial\""));
    }

    #[test]
    fn json_names_controls_and_outcomes() {
        let v = serde_json::to_value(report()).unwrap();
        assert_eq!(v["workloads"][0]["results"][1]["control"], "waf");
        assert_eq!(v["workloads"][0]["results"][1]["outcome"], "partial");
        assert_eq!(v["controls"][0]["pciDss"][0], "1.2.1");
    }
}
