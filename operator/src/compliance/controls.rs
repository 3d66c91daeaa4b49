//! The controls and their evaluation (pure).

use serde::Serialize;

use super::{ClusterSnapshot, WorkloadState};
use podwarden_policy::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Control {
    NetworkSegmentation,
    Waf,
    Dlp,
    EventsExported,
    BaselineReviewed,
}

/// A control with the framework requirement ids it supports.
pub struct ControlInfo {
    pub control: Control,
    pub title: &'static str,
    pub pci_dss: &'static [&'static str],
    pub soc2: &'static [&'static str],
    pub gdpr: &'static [&'static str],
    pub hipaa: &'static [&'static str],
}

pub const CONTROLS: &[ControlInfo] = &[
    ControlInfo {
        control: Control::NetworkSegmentation,
        title: "Network segmentation enforced (every pod injected, allowlist in protect)",
        pci_dss: &["1.2.1", "1.3.1", "1.3.2", "1.4.2"],
        soc2: &["CC6.1", "CC6.6"],
        gdpr: &["Art. 25", "Art. 32(1)(b)"],
        hipaa: &["164.312(a)(1)", "164.312(e)(1)"],
    },
    ControlInfo {
        control: Control::Waf,
        title: "Web application firewall blocking on inbound HTTP",
        pci_dss: &["6.4.1", "6.4.2"],
        soc2: &["CC6.6", "CC7.1"],
        gdpr: &["Art. 32(1)(b)"],
        hipaa: &["164.308(a)(1)(ii)(A)", "164.312(c)(1)"],
    },
    ControlInfo {
        control: Control::Dlp,
        title: "Data loss prevention blocking sensitive data leaving the pod",
        pci_dss: &["3.4.2", "A3.2.5"],
        soc2: &["CC6.7", "C1.1"],
        gdpr: &["Art. 5(1)(f)", "Art. 32(1)(b)"],
        hipaa: &["164.312(e)(1)", "164.312(e)(2)(i)"],
    },
    ControlInfo {
        control: Control::EventsExported,
        title: "Security events exported off the pod for audit",
        pci_dss: &["10.2.1", "10.3.3", "10.4.1"],
        soc2: &["CC7.2", "CC7.3"],
        gdpr: &["Art. 30", "Art. 33"],
        hipaa: &["164.312(b)", "164.308(a)(1)(ii)(D)"],
    },
    ControlInfo {
        control: Control::BaselineReviewed,
        title: "Allowlist approved by a person recently",
        pci_dss: &["1.2.7", "1.2.5"],
        soc2: &["CC8.1", "CC6.1"],
        gdpr: &["Art. 32(1)(d)"],
        hipaa: &["164.308(a)(8)"],
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The control holds.
    Pass,
    /// Detecting but not preventing (monitor mode), or partly covered.
    Partial,
    Fail,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Partial => "partial",
            Outcome::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlResult {
    pub control: Control,
    pub outcome: Outcome,
    /// Why, in a sentence a reviewer can act on.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    pub namespace: String,
    pub workload: String,
    pub results: Vec<ControlResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameworkIds {
    pub control: Control,
    pub title: &'static str,
    pub pci_dss: &'static [&'static str],
    pub soc2: &'static [&'static str],
    pub gdpr: &'static [&'static str],
    pub hipaa: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub taken_at: String,
    pub max_review_age_days: u32,
    pub controls: Vec<FrameworkIds>,
    pub workloads: Vec<WorkloadReport>,
    /// Namespaces with no injected workload at all.
    pub uncovered_namespaces: Vec<String>,
}

impl Report {
    /// Counts of pass/partial/fail over all workloads and controls.
    pub fn totals(&self) -> (usize, usize, usize) {
        let all = self.workloads.iter().flat_map(|w| &w.results);
        all.fold((0, 0, 0), |(p, q, f), r| match r.outcome {
            Outcome::Pass => (p + 1, q, f),
            Outcome::Partial => (p, q + 1, f),
            Outcome::Fail => (p, q, f + 1),
        })
    }
}

/// Evaluates every control for every workload of the snapshot.
/// `max_review_age_days`: how old an approval may be (PCI DSS 1.2.7 asks for
/// a review at least every six months; 90 is a common internal target).
pub fn evaluate(snapshot: &ClusterSnapshot, max_review_age_days: u32) -> Report {
    let now = parse_time(&snapshot.taken_at);
    let mut workloads = Vec::new();
    let mut uncovered = Vec::new();
    for ns in &snapshot.namespaces {
        if ns.workloads.iter().all(|w| w.injected_pods == 0) {
            uncovered.push(ns.name.clone());
        }
        for w in &ns.workloads {
            let results = CONTROLS
                .iter()
                .map(|c| check(c.control, w, now, max_review_age_days))
                .collect();
            workloads.push(WorkloadReport {
                namespace: ns.name.clone(),
                workload: w.name.clone(),
                results,
            });
        }
    }
    workloads.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
    uncovered.sort();
    Report {
        taken_at: snapshot.taken_at.clone(),
        max_review_age_days,
        controls: CONTROLS
            .iter()
            .map(|c| FrameworkIds {
                control: c.control,
                title: c.title,
                pci_dss: c.pci_dss,
                soc2: c.soc2,
                gdpr: c.gdpr,
                hipaa: c.hipaa,
            })
            .collect(),
        workloads,
        uncovered_namespaces: uncovered,
    }
}

fn result(control: Control, outcome: Outcome, reason: impl Into<String>) -> ControlResult {
    ControlResult {
        control,
        outcome,
        reason: reason.into(),
    }
}

fn by_mode(control: Control, what: &str, mode: Option<Mode>, when_none: &str) -> ControlResult {
    match mode {
        Some(Mode::Protect) => result(control, Outcome::Pass, format!("{what} in protect")),
        Some(Mode::Monitor) => result(
            control,
            Outcome::Partial,
            format!("{what} in monitor: detects, does not block"),
        ),
        Some(Mode::Learn) => result(
            control,
            Outcome::Fail,
            format!("{what} in learn: nothing is evaluated"),
        ),
        None => result(control, Outcome::Fail, when_none),
    }
}

fn check(
    control: Control,
    w: &WorkloadState,
    now: Option<time::OffsetDateTime>,
    max_days: u32,
) -> ControlResult {
    if w.injected_pods == 0 {
        return result(
            control,
            Outcome::Fail,
            format!("no pod of {} runs the podwarden sidecar", w.name),
        );
    }
    match control {
        Control::NetworkSegmentation => {
            if w.injected_pods < w.pods {
                return result(
                    control,
                    Outcome::Fail,
                    format!(
                        "{} of {} pods run without the sidecar",
                        w.pods - w.injected_pods,
                        w.pods
                    ),
                );
            }
            by_mode(
                control,
                "network allowlist",
                w.network_mode,
                "no approved policy",
            )
        }
        Control::Waf | Control::Dlp if w.network_mode.is_none() => {
            result(control, Outcome::Fail, "no approved policy")
        }
        Control::Waf => by_mode(
            control,
            "WAF",
            w.waf_mode,
            "WAF not configured in the policy",
        ),
        Control::Dlp => by_mode(
            control,
            "DLP",
            w.dlp_mode,
            "DLP not configured in the policy",
        ),
        Control::EventsExported => {
            if w.events_exported {
                result(
                    control,
                    Outcome::Pass,
                    "events are shipped to an external sink",
                )
            } else {
                result(control, Outcome::Fail, "events stay in the pod's log only")
            }
        }
        Control::BaselineReviewed => match (&w.approved_at, now) {
            (None, _) => result(control, Outcome::Fail, "never approved"),
            (Some(at), Some(now)) => match parse_time(at) {
                None => result(
                    control,
                    Outcome::Fail,
                    format!("approval time {at:?} is not RFC 3339"),
                ),
                Some(t) => {
                    let days = (now - t).whole_days();
                    if days <= i64::from(max_days) {
                        result(control, Outcome::Pass, format!("approved {days} days ago"))
                    } else {
                        result(
                            control,
                            Outcome::Fail,
                            format!("approved {days} days ago (limit {max_days})"),
                        )
                    }
                }
            },
            (Some(_), None) => result(control, Outcome::Fail, "snapshot time is not RFC 3339"),
        },
    }
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::super::NamespaceState;
    use super::*;

    fn wl(name: &str, mode: Option<Mode>) -> WorkloadState {
        WorkloadState {
            name: name.into(),
            pods: 3,
            injected_pods: 3,
            network_mode: mode,
            waf_mode: mode,
            dlp_mode: Some(Mode::Monitor),
            events_exported: true,
            approved_at: Some("2026-10-01T00:00:00Z".into()),
            policy_version: Some(2),
        }
    }

    fn outcome(r: &Report, wl: &str, c: Control) -> Outcome {
        let w = r.workloads.iter().find(|w| w.workload == wl).unwrap();
        w.results.iter().find(|x| x.control == c).unwrap().outcome
    }

    fn snapshot(workloads: Vec<WorkloadState>) -> ClusterSnapshot {
        ClusterSnapshot {
            taken_at: "2026-11-23T12:00:00Z".into(),
            namespaces: vec![
                NamespaceState {
                    name: "shop".into(),
                    injection_enabled: true,
                    workloads,
                },
                NamespaceState {
                    name: "legacy".into(),
                    injection_enabled: false,
                    workloads: vec![],
                },
            ],
        }
    }

    #[test]
    fn modes_map_to_outcomes() {
        let r = evaluate(
            &snapshot(vec![
                wl("Deployment/a", Some(Mode::Protect)),
                wl("Deployment/b", Some(Mode::Learn)),
            ]),
            90,
        );
        assert_eq!(
            outcome(&r, "Deployment/a", Control::NetworkSegmentation),
            Outcome::Pass
        );
        assert_eq!(outcome(&r, "Deployment/a", Control::Waf), Outcome::Pass);
        assert_eq!(outcome(&r, "Deployment/a", Control::Dlp), Outcome::Partial);
        assert_eq!(
            outcome(&r, "Deployment/b", Control::NetworkSegmentation),
            Outcome::Fail
        );
        assert_eq!(r.uncovered_namespaces, vec!["legacy".to_string()]);
    }

    #[test]
    fn partial_injection_fails_segmentation() {
        let mut w = wl("Deployment/a", Some(Mode::Protect));
        w.injected_pods = 2;
        let r = evaluate(&snapshot(vec![w]), 90);
        assert_eq!(
            outcome(&r, "Deployment/a", Control::NetworkSegmentation),
            Outcome::Fail
        );
        let w = &r.workloads[0].results[0];
        assert!(w.reason.contains("1 of 3"), "{}", w.reason);
    }

    #[test]
    fn review_age_is_measured_from_the_snapshot() {
        let w = wl("Deployment/a", Some(Mode::Protect)); // approved 53 days before
        assert_eq!(
            outcome(
                &evaluate(&snapshot(vec![w.clone()]), 90),
                "Deployment/a",
                Control::BaselineReviewed
            ),
            Outcome::Pass
        );
        assert_eq!(
            outcome(
                &evaluate(&snapshot(vec![w.clone()]), 30),
                "Deployment/a",
                Control::BaselineReviewed
            ),
            Outcome::Fail
        );
        let mut never = w;
        never.approved_at = None;
        assert_eq!(
            outcome(
                &evaluate(&snapshot(vec![never]), 90),
                "Deployment/a",
                Control::BaselineReviewed
            ),
            Outcome::Fail
        );
    }

    #[test]
    fn every_control_maps_to_all_four_frameworks() {
        for c in CONTROLS {
            assert!(
                !c.pci_dss.is_empty()
                    && !c.soc2.is_empty()
                    && !c.gdpr.is_empty()
                    && !c.hipaa.is_empty()
            );
        }
        let r = evaluate(&snapshot(vec![wl("Deployment/a", None)]), 90);
        assert_eq!(r.workloads[0].results.len(), CONTROLS.len());
        assert_eq!(r.totals(), (2, 0, 3)); // events + review pass; without a policy the 3 mode controls fail
    }
}
