//! DNS messages from the pod (queries) and from resolvers (answers), as the
//! proxy's DNS listener parses them: any bytes give a message or an error,
//! a negative answer to any query parses back as a response to it, and the
//! tunnelling assessment takes any name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwarden_policy::dns::{
    assess_query, negative_answer, parse_message, TunnelThresholds, RCODE_NXDOMAIN,
};

fuzz_target!(|bytes: &[u8]| {
    let Ok(msg) = parse_message(bytes) else {
        return;
    };
    for q in &msg.questions {
        let _ = assess_query(&q.name, q.qtype, &TunnelThresholds::default());
    }
    if let Some(answer) = negative_answer(bytes, RCODE_NXDOMAIN) {
        let back = parse_message(&answer).expect("our own negative answer must parse");
        assert_eq!(back.questions.len(), msg.questions.len());
    }
});
