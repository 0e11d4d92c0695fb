//! What the application on each member reports about its own ability to do the leader's work, shared over the
//! raft port so a leader whose application cannot work can hand the raft leadership (and with it the miner
//! lease, which only the raft leader can hold) to a member whose application can.
//!
//! The raft crate does not interpret the report: the application publishes it on its node
//! ([`crate::RaftNode::set_app_health`]) and, on the leader, reads its peers' ([`crate::RaftNode::peer_app_health`])
//! before choosing a target ([`crate::RaftNode::hand_off_to`]). A member that publishes nothing (not started yet,
//! or a build without this route, which answers 404) is reported as unknown, and a careful caller treats it as
//! unable.
//!
//! The report grows at its end only, and its decoding takes a report that ends early (a member of an older
//! build) with the missing fields unknown: the wire codec (postcard) is not self-describing, so `serde(default)`
//! alone would fail the whole report (the member then unknown for every purpose, chain progress included) rather
//! than the field. A newer report read by an older build decodes too (the codec ignores trailing bytes).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The raft-port route answering a member's [`AppHealth`] (`Option`: `None` until its application published one).
pub const PATH: &str = "/admin/app-health";

/// One member's application health as it last published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppHealth {
    /// The highest chain height the member's application read successfully (0: none yet).
    pub chain_height: i64,
    /// Milliseconds since that height last advanced (`None`: it never did).
    pub progressed_ms_ago: Option<u64>,
    /// The chain's block time as the member measured it, in ms (`None`: not measured yet).
    pub block_time_ms: Option<u64>,
    /// The member's application considers itself unable to do the leader's work (its chain reads stalled, or
    /// its miner's loop stopped completing iterations).
    pub stalled: bool,
    /// The supplier operator addresses the member holds keys for, sorted (`None`: unknown, as in the report of
    /// a member built before this field: it never counts as holding any key, let alone all of them).
    pub suppliers: Option<Vec<String>>,
}

/// [`AppHealth`] as a self-describing format (JSON) gives it: every field named, the newer ones optional.
#[derive(Deserialize)]
#[serde(rename = "AppHealth")]
struct Named {
    chain_height: i64,
    progressed_ms_ago: Option<u64>,
    block_time_ms: Option<u64>,
    stalled: bool,
    #[serde(default)]
    suppliers: Option<Vec<String>>,
}

/// The fields of [`AppHealth`], in wire order.
const FIELDS: &[&str] = &[
    "chain_height",
    "progressed_ms_ago",
    "block_time_ms",
    "stalled",
    "suppliers",
];

impl<'de> Deserialize<'de> for AppHealth {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("AppHealth", FIELDS, HealthVisitor)
    }
}

struct HealthVisitor;

impl<'de> serde::de::Visitor<'de> for HealthVisitor {
    type Value = AppHealth;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member's application health")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<AppHealth, A::Error> {
        use serde::de::Error;
        let missing = |i: usize| A::Error::invalid_length(i, &self);
        let chain_height = seq.next_element()?.ok_or_else(|| missing(0))?;
        let progressed_ms_ago = seq.next_element()?.ok_or_else(|| missing(1))?;
        let block_time_ms = seq.next_element()?.ok_or_else(|| missing(2))?;
        let stalled = seq.next_element()?.ok_or_else(|| missing(3))?;
        // Absent from an older member's report: postcard then fails at the end of its input instead of ending
        // the sequence. Unknown either way (never "holds every key"); it is the report's last field, so nothing
        // after it is misread.
        let suppliers = seq.next_element::<Option<Vec<String>>>().ok().flatten().flatten();
        Ok(AppHealth {
            chain_height,
            progressed_ms_ago,
            block_time_ms,
            stalled,
            suppliers,
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<AppHealth, A::Error> {
        let n = Named::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(AppHealth {
            chain_height: n.chain_height,
            progressed_ms_ago: n.progressed_ms_ago,
            block_time_ms: n.block_time_ms,
            stalled: n.stalled,
            suppliers: n.suppliers,
        })
    }
}

/// The report a node serves, shared by the node and its raft port.
pub(crate) type Shared = Arc<Mutex<Option<AppHealth>>>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::types::{decode, encode};

    /// The report as a member built before `suppliers` serves it.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Older {
        chain_height: i64,
        progressed_ms_ago: Option<u64>,
        block_time_ms: Option<u64>,
        stalled: bool,
    }

    fn report(suppliers: Option<Vec<String>>) -> AppHealth {
        AppHealth {
            chain_height: 42,
            progressed_ms_ago: Some(7),
            block_time_ms: None,
            stalled: true,
            suppliers,
        }
    }

    /// As the raft port answers it: `Result<Option<AppHealth>, _>`, the report last.
    type Answer<T> = Result<Option<T>, String>;

    #[test]
    fn an_older_members_report_decodes_with_its_keys_unknown() {
        let older: Answer<Older> = Ok(Some(Older {
            chain_height: 42,
            progressed_ms_ago: Some(7),
            block_time_ms: None,
            stalled: true,
        }));
        let read: Answer<AppHealth> = decode(&encode(&older).unwrap()).unwrap();
        assert_eq!(read, Ok(Some(report(None))));
    }

    #[test]
    fn a_newer_report_round_trips_and_an_older_member_reads_it() {
        for suppliers in [
            None,
            Some(vec![]),
            Some(vec!["pokt1a".to_string(), "pokt1b".to_string()]),
        ] {
            let sent: Answer<AppHealth> = Ok(Some(report(suppliers)));
            let bytes = encode(&sent).unwrap();
            assert_eq!(decode::<Answer<AppHealth>>(&bytes).unwrap(), sent);
            let older: Answer<Older> = decode(&bytes).unwrap();
            assert_eq!(older.unwrap().unwrap().chain_height, 42);
        }
    }
}
