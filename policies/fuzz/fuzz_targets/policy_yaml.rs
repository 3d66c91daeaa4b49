//! The policy loader on any text (a policy file, a ConfigMap, a PUT /policy
//! body): whatever it accepts must compile or fail with an error, never
//! panic; what compiles must decide any flow without panicking.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use podwarden_policy::{load_policy_str, CompiledPolicy, Decide, Direction, Flow};

fuzz_target!(|text: &str| {
    let Ok(doc) = load_policy_str(text, "fuzz.yaml") else {
        return;
    };
    let Ok(policy) = CompiledPolicy::compile(&doc) else {
        return;
    };
    let peer: SocketAddr = ([203, 0, 113, 7], 443).into();
    let local: SocketAddr = ([192, 0, 2, 10], 40000).into();
    for dir in [Direction::Outbound, Direction::Inbound] {
        let _ = policy.decide(&Flow::connection(dir, peer, local));
    }
    // What loads must serialise back and load again to the same document.
    if let Ok(yaml) = serde_yaml_ng::to_string(&doc) {
        let again =
            load_policy_str(&yaml, "fuzz-again.yaml").expect("a serialised policy must load again");
        assert_eq!(again, doc, "policy changed on a YAML round trip");
    }
});
