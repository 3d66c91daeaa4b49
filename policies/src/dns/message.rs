//! DNS messages (queries and answers) parsed with `simple-dns`, reduced to
//! what the proxy needs: questions, and the addresses each question name
//! resolved to through its CNAME chain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag};

use crate::matcher::names::normalise;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Null,
    Mx,
    Srv,
    Ptr,
    Any,
    Other(u16),
}

impl RecordType {
    pub fn from_code(code: u16) -> RecordType {
        match code {
            1 => RecordType::A,
            28 => RecordType::Aaaa,
            5 => RecordType::Cname,
            16 => RecordType::Txt,
            10 => RecordType::Null,
            15 => RecordType::Mx,
            33 => RecordType::Srv,
            12 => RecordType::Ptr,
            255 => RecordType::Any,
            other => RecordType::Other(other),
        }
    }

    /// The type's mnemonic as DNS tools print it (RFC 3597 `TYPEn` for the
    /// others): one spelling in flow records, events and logs.
    pub fn mnemonic(self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
            RecordType::Null => "NULL",
            RecordType::Mx => "MX",
            RecordType::Srv => "SRV",
            RecordType::Ptr => "PTR",
            RecordType::Any => "ANY",
            RecordType::Other(n) => return std::borrow::Cow::Owned(format!("TYPE{n}")),
        })
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.mnemonic())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsQuestion {
    /// Normalised: lower-case, no trailing dot.
    pub name: String,
    pub qtype: RecordType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AnswerData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Other(RecordType),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    pub name: String,
    pub ttl: u32,
    pub data: AnswerData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    /// Response code (0 = NOERROR, 3 = NXDOMAIN, ...).
    pub rcode: u16,
    pub questions: Vec<DnsQuestion>,
    pub answers: Vec<DnsAnswer>,
}

/// An address a question name resolved to, with every name on the way
/// (the question name first, then CNAME targets) and the smallest TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub ip: IpAddr,
    pub ttl: u32,
    pub names: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsParseError {
    #[error("malformed DNS message: {0}")]
    Malformed(String),
}

pub fn parse_message(bytes: &[u8]) -> Result<DnsMessage, DnsParseError> {
    let p = Packet::parse(bytes).map_err(|e| DnsParseError::Malformed(e.to_string()))?;
    let questions = p
        .questions
        .iter()
        .map(|q| DnsQuestion {
            name: normalise(&q.qname.to_string()).into_owned(),
            qtype: RecordType::from_code(u16::from(q.qtype)),
        })
        .collect();
    let answers = p
        .answers
        .iter()
        .map(|rr| DnsAnswer {
            name: normalise(&rr.name.to_string()).into_owned(),
            ttl: rr.ttl,
            data: match &rr.rdata {
                RData::A(a) => AnswerData::A(Ipv4Addr::from(a.address)),
                RData::AAAA(a) => AnswerData::Aaaa(Ipv6Addr::from(a.address)),
                RData::CNAME(c) => AnswerData::Cname(normalise(&c.0.to_string()).into_owned()),
                other => AnswerData::Other(RecordType::from_code(u16::from(other.type_code()))),
            },
        })
        .collect();
    Ok(DnsMessage {
        id: p.id(),
        is_response: p.has_flags(PacketFlag::RESPONSE),
        rcode: p.rcode() as u16,
        questions,
        answers,
    })
}

// Longer chains are not followed (and loops end here).
const MAX_CHAIN: usize = 8;

impl DnsMessage {
    /// Addresses reachable from the questions through CNAME chains in the
    /// answer section. Records for names the question did not lead to are
    /// ignored: a response cannot vouch for unrelated names.
    pub fn resolutions(&self) -> Vec<Resolution> {
        let mut out: Vec<Resolution> = Vec::new();
        for q in &self.questions {
            let mut chain = vec![q.name.clone()];
            let mut ttl = u32::MAX;
            for _ in 0..MAX_CHAIN {
                let Some(current) = chain.last().cloned() else {
                    break;
                };
                let mut next = None;
                for a in self.answers.iter().filter(|a| a.name == current) {
                    let ip = match &a.data {
                        AnswerData::A(ip) => IpAddr::V4(*ip),
                        AnswerData::Aaaa(ip) => IpAddr::V6(*ip),
                        AnswerData::Cname(target) => {
                            if next.is_none() && !chain.contains(target) {
                                next = Some((target.clone(), a.ttl));
                            }
                            continue;
                        }
                        AnswerData::Other(_) => continue,
                    };
                    if !out.iter().any(|r| r.ip == ip && r.names == chain) {
                        out.push(Resolution {
                            ip,
                            ttl: ttl.min(a.ttl),
                            names: chain.clone(),
                        });
                    }
                }
                match next {
                    Some((target, t)) => {
                        ttl = ttl.min(t);
                        chain.push(target);
                    }
                    None => break,
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use simple_dns::rdata::{A, AAAA, CNAME};
    use simple_dns::{Name, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

    fn response(qname: &str, records: Vec<ResourceRecord<'static>>) -> Vec<u8> {
        let mut p = Packet::new_reply(7);
        p.questions.push(Question::new(
            Name::new_unchecked(qname).into_owned(),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.answers = records;
        p.build_bytes_vec().unwrap()
    }

    fn a(name: &'static str, ttl: u32, ip: [u8; 4]) -> ResourceRecord<'static> {
        ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            ttl,
            RData::A(A {
                address: u32::from(Ipv4Addr::from(ip)),
            }),
        )
    }

    fn cname(name: &'static str, ttl: u32, to: &'static str) -> ResourceRecord<'static> {
        ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            ttl,
            RData::CNAME(CNAME(Name::new_unchecked(to))),
        )
    }

    #[test]
    fn follows_cname_chains_and_ignores_unrelated_records() {
        let bytes = response(
            "API.example",
            vec![
                cname("api.example", 300, "edge.cdn.example"),
                cname("edge.cdn.example", 60, "pop1.cdn.example"),
                a("pop1.cdn.example", 120, [198, 51, 100, 1]),
                ResourceRecord::new(
                    Name::new_unchecked("pop1.cdn.example"),
                    CLASS::IN,
                    30,
                    RData::AAAA(AAAA {
                        address: u128::from("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
                    }),
                ),
                // Not reachable from the question: must not be believed.
                a("bank.example", 300, [203, 0, 113, 66]),
            ],
        );
        let m = parse_message(&bytes).unwrap();
        assert!(m.is_response);
        assert_eq!(m.id, 7);
        assert_eq!(
            m.questions,
            vec![DnsQuestion {
                name: "api.example".into(),
                qtype: RecordType::A
            }]
        );
        let r = m.resolutions();
        let chain = vec![
            "api.example".to_string(),
            "edge.cdn.example".into(),
            "pop1.cdn.example".into(),
        ];
        assert_eq!(
            r,
            vec![
                Resolution {
                    ip: "198.51.100.1".parse().unwrap(),
                    ttl: 60,
                    names: chain.clone()
                },
                Resolution {
                    ip: "2001:db8::1".parse().unwrap(),
                    ttl: 30,
                    names: chain
                },
            ]
        );
    }

    #[test]
    fn cname_loops_end() {
        let bytes = response(
            "a.example",
            vec![
                cname("a.example", 5, "b.example"),
                cname("b.example", 5, "a.example"),
            ],
        );
        assert!(parse_message(&bytes).unwrap().resolutions().is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_message(&[]).is_err());
        assert!(parse_message(&[0xff; 5]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(m) = parse_message(&bytes) {
                let _ = m.resolutions();
            }
        }

        #[test]
        fn mutated_responses_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
            let mut bytes = response("api.example", vec![cname("api.example", 300, "x.example"), a("x.example", 1, [192, 0, 2, 1])]);
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] = b;
            }
            if let Ok(m) = parse_message(&bytes) {
                let _ = m.resolutions();
            }
        }
    }
}
