//! In-process leases with fencing tokens, shared by the memory and redb backends, and the check of a
//! [`Fence`] against them (the backends run it atomically with each fenced write).
//!
//! A lease is held by one candidate until `ttl` after its last campaign/renew. A new term takes the token
//! `last_token + 1`; the redb backend persists that token before the campaign returns so tokens keep increasing
//! across restarts. Time is `tokio::time::Instant`, so tests may use `tokio::time::pause`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::StorageError;
use crate::contract::{Fence, LeaderInfo};

#[derive(Debug)]
struct Holder {
    candidate: String,
    token: u64,
    expires: Instant,
}

#[derive(Debug)]
struct Election {
    holder: Option<Holder>,
    last_token: u64,
    tx: watch::Sender<Option<LeaderInfo>>,
}

impl Election {
    fn new(last_token: u64) -> Self {
        Self {
            holder: None,
            last_token,
            tx: watch::Sender::new(None),
        }
    }

    fn publish(&self) {
        let info = self.holder.as_ref().map(|h| LeaderInfo {
            holder: h.candidate.clone(),
            token: h.token,
        });
        self.tx.send_if_modified(|cur| {
            if *cur == info {
                false
            } else {
                *cur = info;
                true
            }
        });
    }

    fn expire(&mut self, now: Instant) {
        if self.holder.as_ref().is_some_and(|h| h.expires <= now) {
            self.holder = None;
            self.publish();
        }
    }
}

/// What a campaign would do, decided before any persistence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CampaignPlan {
    /// The candidate already holds the lease with this token (extended).
    Holder(u64),
    /// Someone else holds a live lease.
    Busy,
    /// A new term with this token; call [`LeaseTable::install`] once it is persisted.
    NewTerm(u64),
}

/// Leases of every election of one backend.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    elections: HashMap<String, Election>,
}

impl LeaseTable {
    fn election(&mut self, name: &str) -> &mut Election {
        self.elections
            .entry(name.to_owned())
            .or_insert_with(|| Election::new(0))
    }

    /// Expires every lapsed lease (publishing the change).
    pub fn expire_all(&mut self, now: Instant) {
        for e in self.elections.values_mut() {
            e.expire(now);
        }
    }

    /// Ends every lease now (publishing the change): every fenced write of a current holder is refused from
    /// here on, and the next campaign starts a new term with a higher token.
    pub fn depose_all(&mut self) {
        for e in self.elections.values_mut() {
            if e.holder.take().is_some() {
                e.publish();
            }
        }
    }

    /// Decides a campaign. `Holder` is applied immediately (lease extended). A new term's token exceeds both
    /// every token handed out by this table and `persisted_floor` (the last token persisted by a previous run).
    pub fn plan(
        &mut self,
        name: &str,
        candidate: &str,
        ttl: Duration,
        now: Instant,
        persisted_floor: u64,
    ) -> CampaignPlan {
        let e = self.election(name);
        e.expire(now);
        match &mut e.holder {
            Some(h) if h.candidate == candidate => {
                h.expires = now + ttl;
                CampaignPlan::Holder(h.token)
            }
            Some(_) => CampaignPlan::Busy,
            None => CampaignPlan::NewTerm(e.last_token.max(persisted_floor).saturating_add(1)),
        }
    }

    /// Installs a new term planned by [`LeaseTable::plan`] (after its token is durable).
    pub fn install(&mut self, name: &str, candidate: &str, token: u64, ttl: Duration, now: Instant) {
        let e = self.election(name);
        e.last_token = e.last_token.max(token);
        e.holder = Some(Holder {
            candidate: candidate.to_owned(),
            token,
            expires: now + ttl,
        });
        e.publish();
    }

    /// Extends the lease when `candidate` holds it with `token`.
    pub fn renew(&mut self, name: &str, candidate: &str, token: u64, ttl: Duration, now: Instant) -> bool {
        let Some(e) = self.elections.get_mut(name) else {
            return false;
        };
        e.expire(now);
        match &mut e.holder {
            Some(h) if h.candidate == candidate && h.token == token => {
                h.expires = now + ttl;
                true
            }
            _ => false,
        }
    }

    /// Drops the lease when `candidate` holds it with `token`.
    pub fn resign(&mut self, name: &str, candidate: &str, token: u64, now: Instant) -> bool {
        let Some(e) = self.elections.get_mut(name) else {
            return false;
        };
        e.expire(now);
        let held = e
            .holder
            .as_ref()
            .is_some_and(|h| h.candidate == candidate && h.token == token);
        if held {
            e.holder = None;
            e.publish();
        }
        held
    }

    /// The live holder.
    pub fn leader(&mut self, name: &str, now: Instant) -> Option<LeaderInfo> {
        let e = self.elections.get_mut(name)?;
        e.expire(now);
        e.holder.as_ref().map(|h| LeaderInfo {
            holder: h.candidate.clone(),
            token: h.token,
        })
    }

    /// Checks `fence` against the live holder of its election at `now` (no state change): `Ok` when the fence's
    /// candidate holds it with the fence's token, else [`StorageError::Fenced`].
    pub fn check(&self, fence: &Fence, now: Instant) -> Result<(), StorageError> {
        let holder = self
            .elections
            .get(&fence.election)
            .and_then(|e| e.holder.as_ref())
            .filter(|h| h.expires > now)
            .map(|h| LeaderInfo {
                holder: h.candidate.clone(),
                token: h.token,
            });
        fence.check(holder.as_ref())
    }

    /// A watch receiver for `name`.
    pub fn watch(&mut self, name: &str, now: Instant) -> watch::Receiver<Option<LeaderInfo>> {
        let e = self.election(name);
        e.expire(now);
        e.tx.subscribe()
    }
}
