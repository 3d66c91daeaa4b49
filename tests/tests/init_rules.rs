//! `podwarden-proxy init` applied for real in a pod namespace: idempotence,
//! exact cleanup, and that nothing but TCP leaves the pod (except DNS to the
//! named resolvers, which goes to the proxy's DNS port).

use std::time::{Duration, Instant};

use podwarden_e2e::pod::{fixture, ruleset, run_init};
use podwarden_e2e::{python, require, Counter, Topology, APP_UID, PROXY_UID, SERVER, UNKNOWN};

const BIN: &[&str] = &["podwarden-proxy"];

fn idempotent_and_clean(backend: &str, save4: &str, save6: &str) {
    if !require(
        &format!("init_idempotent_and_cleanup_{backend}"),
        &[save4, save6],
        BIN,
    ) {
        return;
    }
    let t = Topology::new().unwrap();
    let pod = &t.pod;
    // Someone else's rules in the same tables must survive us.
    let mut foreign = String::from(
        "iptables -t nat -A POSTROUTING -o eth0 -j ACCEPT && \
         ip6tables -A OUTPUT -p udp --dport 9 -j ACCEPT",
    );
    if backend == "legacy" {
        foreign.push_str(" && iptables-legacy -A OUTPUT -p udp --dport 9 -j ACCEPT");
    }
    pod.sh(&foreign).unwrap();
    let before4 = ruleset(pod, save4).unwrap();
    let before6 = ruleset(pod, save6).unwrap();

    let flags = [
        "--backend",
        backend,
        "--dns-resolver",
        "198.51.100.53",
        "--dns-resolver",
        "2001:db8:2::53",
    ];
    run_init(pod, &flags).unwrap();
    let once4 = ruleset(pod, save4).unwrap();
    let once6 = ruleset(pod, save6).unwrap();
    assert_ne!(once4, before4, "init changed nothing");
    for chain in [
        "PODWARDEN_OUTPUT",
        "PODWARDEN_INBOUND",
        "PODWARDEN_OUTPUT_FILTER",
    ] {
        assert!(
            once4.contains(&format!(":{chain} -")),
            "{chain} missing:\n{once4}"
        );
        assert!(
            once6.contains(&format!(":{chain} -")),
            "{chain} missing:\n{once6}"
        );
    }
    assert_eq!(once4.matches("-j PODWARDEN_OUTPUT\n").count(), 1, "{once4}");

    run_init(pod, &flags).unwrap();
    for (save, once) in [(save4, &once4), (save6, &once6)] {
        assert_eq!(
            &ruleset(pod, save).unwrap(),
            once,
            "second init changed {save}"
        );
    }

    let dry = run_init(pod, &["--backend", backend, "--cleanup", "--dry-run"]).unwrap();
    assert!(dry.contains("-X PODWARDEN_OUTPUT"), "{dry}");
    assert_eq!(
        ruleset(pod, save4).unwrap(),
        once4,
        "--dry-run changed rules"
    );

    run_init(pod, &["--backend", backend, "--cleanup"]).unwrap();
    for (save, before) in [(save4, &before4), (save6, &before6)] {
        assert_eq!(
            &ruleset(pod, save).unwrap(),
            before,
            "cleanup left differences in {save}"
        );
    }
    // Cleaning a clean namespace is harmless too.
    let again = run_init(pod, &["--backend", backend, "--cleanup"]).unwrap();
    assert!(again.contains("nothing of ours"), "{again}");
}

#[test]
fn init_is_idempotent_and_cleanup_is_exact_nft() {
    idempotent_and_clean("nft", "iptables-nft-save", "ip6tables-nft-save");
}

#[test]
fn init_is_idempotent_and_cleanup_is_exact_legacy() {
    idempotent_and_clean("legacy", "iptables-legacy-save", "ip6tables-legacy-save");
}

#[test]
fn dry_run_prints_both_families_and_changes_nothing() {
    if !require("dry_run_prints_both_families_and_changes_nothing", &[], BIN) {
        return;
    }
    let t = Topology::new().unwrap();
    let before = ruleset(&t.pod, "iptables-save").unwrap();
    let out = run_init(&t.pod, &["--dry-run", "--dns-resolver", "198.51.100.53"]).unwrap();
    assert!(out.contains("(IPv4)") && out.contains("(IPv6)"), "{out}");
    assert!(out.contains("-A PODWARDEN_REDIRECT -p tcp -j REDIRECT --to-ports 15001"));
    assert_eq!(ruleset(&t.pod, "iptables-save").unwrap(), before);
}

#[test]
fn bad_flags_fail_with_a_message_and_touch_nothing() {
    if !require("bad_flags_fail_with_a_message_and_touch_nothing", &[], BIN) {
        return;
    }
    let t = Topology::new().unwrap();
    let before = ruleset(&t.pod, "iptables-save").unwrap();
    let bin = podwarden_e2e::pod::proxy_bin().unwrap();
    let out = t
        .pod
        .output(
            None,
            &[
                &bin.display().to_string(),
                "init",
                "--exclude-outbound-cidrs",
                "10.0.0.0/99",
            ],
        )
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid CIDR"), "{err}");
    assert_eq!(ruleset(&t.pod, "iptables-save").unwrap(), before);
}

/// Sends a UDP probe and a ping from the pod as `uid` (None = root) and
/// returns how many of each the unknown host received, waiting (polled) for
/// at least `expect` of each.
fn probe(
    t: &Topology,
    uid: Option<u32>,
    v6: bool,
    (udp, icmp): (&Counter, &Counter),
    expect: (u64, u64),
) -> (u64, u64) {
    let (u0, i0) = (udp.packets().unwrap(), icmp.packets().unwrap());
    let dst = UNKNOWN.ip(v6).to_string();
    t.pod
        .exec_as(uid, &[python(), &fixture("udp_send.py"), &dst, "9999"])
        .unwrap();
    // ping's own exit status is irrelevant; the unknown host's counter decides.
    let _ = t.pod.output(uid, &["ping", "-c", "1", "-W", "1", &dst]);
    // What must not arrive gets a moment to show up anyway; what must arrive
    // is polled for (a loaded machine defers packet processing).
    std::thread::sleep(Duration::from_millis(200));
    let deadline = Instant::now() + podwarden_e2e::READY;
    loop {
        let got = (udp.packets().unwrap() - u0, icmp.packets().unwrap() - i0);
        if (got.0 >= expect.0 && got.1 >= expect.1) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn non_tcp_is_dropped(v6: bool) {
    let name = format!(
        "non_tcp_never_leaves_the_pod_{}",
        if v6 { "v6" } else { "v4" }
    );
    if !require(&name, &["ping", "python3"], BIN) {
        return;
    }
    let t = Topology::new().unwrap();
    let udp =
        Counter::install(&t.unknown, v6, "pw-udp", &["-p", "udp", "--dport", "9999"]).unwrap();
    let icmp_spec: &[&str] = if v6 {
        &["-p", "ipv6-icmp", "--icmpv6-type", "echo-request"]
    } else {
        &["-p", "icmp", "--icmp-type", "echo-request"]
    };
    let icmp = Counter::install(&t.unknown, v6, "pw-icmp", icmp_spec).unwrap();

    // Control: without the rules, both the app and root reach the unknown host,
    // so a zero below means the rules dropped it, not that the probe is broken.
    for (uid, who) in [(Some(APP_UID), "app"), (None, "root")] {
        assert_eq!(
            probe(&t, uid, v6, (&udp, &icmp), (1, 1)),
            (1, 1),
            "control ({who}) failed"
        );
    }

    t.init(&["--dns-resolver", &SERVER.ip(v6).to_string()])
        .unwrap();
    for (uid, who) in [(Some(APP_UID), "app"), (None, "root")] {
        assert_eq!(
            probe(&t, uid, v6, (&udp, &icmp), (0, 0)),
            (0, 0),
            "{who}'s UDP/ICMP left the pod"
        );
    }
    // The proxy's own UID stays exempt (it forwards DNS upstream).
    let (u, _) = probe(&t, Some(PROXY_UID), v6, (&udp, &icmp), (1, 0));
    assert_eq!(u, 1, "the proxy's UDP was dropped");
    // DNS to a resolver that is not configured is dropped like any UDP.
    let dns = Counter::install(&t.unknown, v6, "pw-dns", &["-p", "udp", "--dport", "53"]).unwrap();
    let _ = t.pod.output(
        Some(APP_UID),
        &[
            "dig",
            "+tries=1",
            "+time=1",
            &format!("@{}", UNKNOWN.ip(v6)),
            "example.test",
        ],
    );
    assert_eq!(
        dns.packets().unwrap(),
        0,
        "DNS to an unknown resolver left the pod"
    );
}

#[test]
fn non_tcp_never_leaves_the_pod_v4() {
    non_tcp_is_dropped(false);
}

#[test]
fn non_tcp_never_leaves_the_pod_v6() {
    non_tcp_is_dropped(true);
}

fn dns_goes_to_the_proxy(v6: bool) {
    let name = format!(
        "dns_to_named_resolver_goes_to_the_dns_port_{}",
        if v6 { "v6" } else { "v4" }
    );
    if !require(&name, &["dig", "python3"], BIN) {
        return;
    }
    let t = Topology::new().unwrap();
    let resolver = SERVER.ip(v6).to_string();
    let upstream =
        Counter::install(&t.server, v6, "pw-dns", &["-p", "udp", "--dport", "53"]).unwrap();
    // A stand-in for the proxy's DNS listener, running as the proxy's UID.
    t.pod
        .spawn(
            "dns-stub",
            Some(PROXY_UID),
            &[python(), &fixture("dns_stub.py"), "15053"],
        )
        .unwrap();
    t.pod.wait_udp_bound(15053, podwarden_e2e::READY).unwrap();
    t.init(&["--dns-resolver", &resolver]).unwrap();
    for uid in [Some(APP_UID), None] {
        let out = t
            .pod
            .output(
                uid,
                &[
                    "dig",
                    "+tries=1",
                    "+time=2",
                    &format!("@{resolver}"),
                    "app.example.test",
                ],
            )
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("NXDOMAIN"),
            "no answer from the DNS port for {uid:?}:\n{text}"
        );
    }
    let log = t.pod.log_of("dns-stub");
    assert_eq!(log.matches("QUERY app.example.test").count(), 2, "{log}");
    assert_eq!(
        upstream.packets().unwrap(),
        0,
        "the query bypassed the DNS port"
    );
}

#[test]
fn dns_to_named_resolver_goes_to_the_dns_port_v4() {
    dns_goes_to_the_proxy(false);
}

#[test]
fn dns_to_named_resolver_goes_to_the_dns_port_v6() {
    dns_goes_to_the_proxy(true);
}
