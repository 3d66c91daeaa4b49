//! The operator's Prometheus metrics (names match the chart's dashboard).

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub admission: IntCounterVec,
    pub sidecar_requests: IntCounterVec,
    pub violations: IntGaugeVec,
    pub out_of_sync: IntGaugeVec,
    pub baseline_rules: IntGaugeVec,
    pub mode: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    // Registration only fails on duplicate names, which is a programming error caught by tests.
    let _ = r.register(Box::new(c.clone()));
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    /// A fresh set on its own registry (the process uses [`METRICS`]; tests
    /// build their own, as other tests of the binary touch the static).
    fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            admission: counter(
                &r,
                "podwarden_operator_admission_total",
                "Admission reviews by result (injected, skipped, denied, error).",
                &["result"],
            ),
            sidecar_requests: counter(
                &r,
                "podwarden_operator_sidecar_requests_total",
                "Calls to sidecar admin APIs by operation and result.",
                &["op", "result"],
            ),
            violations: gauge(
                &r,
                "podwarden_operator_workload_violations_last_hour",
                "Policy violations reported by a workload's sidecars over the last hour.",
                &["namespace", "workload"],
            ),
            out_of_sync: gauge(
                &r,
                "podwarden_operator_workload_pods_out_of_sync",
                "Pods of a workload not running the approved policy version.",
                &["namespace", "workload"],
            ),
            baseline_rules: gauge(
                &r,
                "podwarden_operator_baseline_rules",
                "Rules in a workload's learned baseline.",
                &["namespace", "workload"],
            ),
            mode: gauge(
                &r,
                "podwarden_operator_workload_mode",
                "1 for the mode of a workload's approved policy.",
                &["namespace", "workload", "mode"],
            ),
            registry: r,
        }
    }

    /// Text exposition of every metric of this set.
    fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Text exposition of every metric.
pub fn render() -> String {
    METRICS.render()
}

#[cfg(test)]
mod tests {
    // Its own set: the webhook and the controller count on the static
    // `METRICS` whenever another test of this binary drives them.
    #[test]
    fn all_metrics_are_registered_and_rendered() {
        let m = super::Metrics::new();
        m.admission.with_label_values(&["injected"]).inc();
        m.mode
            .with_label_values(&["shop", "Deployment/checkout", "protect"])
            .set(1);
        let text = m.render();
        assert!(
            text.contains("podwarden_operator_admission_total{result=\"injected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("podwarden_operator_workload_mode{mode=\"protect\""),
            "{text}"
        );
        assert_eq!(
            m.registry.gather().len(),
            2,
            "only touched vectors are exposed"
        );
    }
}
