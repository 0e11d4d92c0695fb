//! Sessions and their windows (§3, §5.2): the anchored session grid, grace period, claim and proof windows,
//! settlement, the proof seed block and proof path, session ids and supplier selection.
//!
//! All arithmetic is int64 with Go's truncating division, as the chain computes it; heights are ≥ the anchor, so
//! truncation equals floor. Functions take the shared params in effect at the height being evaluated
//! (`ParamsAtHeight(h)`, usually the session end height); a grid with `num_blocks_per_session = 0` is refused
//! instead of dividing by zero, and additions saturate so hostile params cannot overflow.

use super::wire::{SessionHeader, SharedParams};
use super::{sha3_256, sha256};

/// Errors of session computations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `num_blocks_per_session` is zero or does not fit an i64.
    #[error("num_blocks_per_session must be in 1..=i64::MAX, got {0}")]
    BadBlocksPerSession(u64),
    /// A session header failed basic validation (§3 "Header ValidateBasic").
    #[error("invalid session header: {0}")]
    InvalidHeader(&'static str),
}

fn offset(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The session grid of one params epoch: `num_blocks_per_session` anchored at (`A`, `K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionGrid {
    blocks: i64,
    anchor: i64,
    number_at_anchor: i64,
}

impl SessionGrid {
    /// The grid described by `params` (the anchor fields 12/13 of the shared params).
    pub fn new(params: &SharedParams) -> Result<Self, SessionError> {
        let blocks = i64::try_from(params.num_blocks_per_session)
            .ok()
            .filter(|b| *b > 0)
            .ok_or(SessionError::BadBlocksPerSession(params.num_blocks_per_session))?;
        Ok(Self {
            blocks,
            anchor: params.session_grid_anchor_height,
            number_at_anchor: params.session_number_at_anchor,
        })
    }

    /// (A, K) as used for height `h`: (1, 1) when A ≤ 0 or A > h; K ≥ 1.
    fn anchor_for(&self, h: i64) -> (i64, i64) {
        let (a, k) = if self.anchor <= 0 || self.anchor > h {
            (1, 1)
        } else {
            (self.anchor, self.number_at_anchor)
        };
        (a, if k <= 0 { 1 } else { k })
    }

    /// First block of the session containing `h` (0 for h ≤ 0).
    pub fn session_start(&self, h: i64) -> i64 {
        if h <= 0 {
            return 0;
        }
        let (a, _) = self.anchor_for(h);
        a.saturating_add(((h - a) / self.blocks).saturating_mul(self.blocks))
    }

    /// Last block of the session containing `h` (0 for h ≤ 0).
    pub fn session_end(&self, h: i64) -> i64 {
        if h <= 0 {
            return 0;
        }
        self.session_start(h).saturating_add(self.blocks - 1)
    }

    /// Session number of `h` (0 for h ≤ 0).
    pub fn session_number(&self, h: i64) -> i64 {
        if h <= 0 {
            return 0;
        }
        let (a, k) = self.anchor_for(h);
        k.saturating_add((h - a) / self.blocks)
    }
}

/// Every height of one session's lifecycle (§3), computed from the shared params at the session end height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    /// Session start.
    pub start: i64,
    /// Session end.
    pub end: i64,
    /// Session number.
    pub number: i64,
    /// Last height at which relays of the session are still accepted (end + grace).
    pub grace_period_end: i64,
    /// `ClaimWindowOpen` = earliest claim commit height (block-hash spreading is disabled at v0.1.35).
    pub claim_open: i64,
    /// `ClaimWindowClose` (inclusive).
    pub claim_close: i64,
    /// `ProofWindowOpen` = earliest proof commit height.
    pub proof_open: i64,
    /// `ProofWindowClose` (inclusive).
    pub proof_close: i64,
    /// `SettlementSessionEnd`.
    pub settlement: i64,
}

impl SessionWindows {
    /// The windows of the session containing `height` under `params`.
    pub fn new(params: &SharedParams, height: i64) -> Result<Self, SessionError> {
        let grid = SessionGrid::new(params)?;
        let end = grid.session_end(height);
        let claim_open = end
            .saturating_add(offset(params.claim_window_open_offset_blocks))
            .saturating_add(1);
        let claim_close = claim_open.saturating_add(offset(params.claim_window_close_offset_blocks));
        let proof_open = claim_close.saturating_add(offset(params.proof_window_open_offset_blocks));
        let proof_close = proof_open.saturating_add(offset(params.proof_window_close_offset_blocks));
        let offsets = offset(params.claim_window_open_offset_blocks)
            .saturating_add(offset(params.claim_window_close_offset_blocks))
            .saturating_add(offset(params.proof_window_open_offset_blocks))
            .saturating_add(offset(params.proof_window_close_offset_blocks));
        Ok(Self {
            start: grid.session_start(height),
            end,
            number: grid.session_number(height),
            grace_period_end: end.saturating_add(offset(params.grace_period_end_offset_blocks)),
            claim_open,
            claim_close,
            proof_open,
            proof_close,
            settlement: end.saturating_add(1).saturating_add(offsets),
        })
    }

    /// The block whose hash seeds the proof path and the proof lottery: exactly `proof_open − 1` (§5.2, §6.3).
    pub fn proof_seed_height(&self) -> i64 {
        self.proof_open - 1
    }

    /// Whether a claim included at `h` is inside the window (inclusive).
    pub fn claim_in_window(&self, h: i64) -> bool {
        (self.claim_open..=self.claim_close).contains(&h)
    }

    /// Whether a proof included at `h` is inside the window (inclusive).
    pub fn proof_in_window(&self, h: i64) -> bool {
        (self.proof_open..=self.proof_close).contains(&h)
    }

    /// Whether the grace period is over at `current` (relays of the session are refused).
    pub fn grace_elapsed(&self, current: i64) -> bool {
        current > self.grace_period_end
    }
}

/// The session-id preimage: `blockHash(start) ‖ "." ‖ service ‖ "." ‖ app ‖ "." ‖ u64_le(start)` (§3).
fn session_preimage(start_block_hash: &[u8], service_id: &str, app_address: &str, start: i64) -> Vec<u8> {
    let mut pre = Vec::with_capacity(start_block_hash.len() + service_id.len() + app_address.len() + 11);
    pre.extend_from_slice(start_block_hash);
    pre.push(b'.');
    pre.extend_from_slice(service_id.as_bytes());
    pre.push(b'.');
    pre.extend_from_slice(app_address.as_bytes());
    pre.push(b'.');
    pre.extend_from_slice(&(start as u64).to_le_bytes());
    pre
}

/// Session id = lowercase hex of SHA3-256 of the preimage (§3).
pub fn session_id(start_block_hash: &[u8], service_id: &str, app_address: &str, start: i64) -> String {
    hex::encode(sha3_256(&session_preimage(
        start_block_hash,
        service_id,
        app_address,
        start,
    )))
}

/// Supplier selection (§3): unless there are fewer candidates than `num_suppliers` (then all of them, in the
/// given order), sort by the signed weight of SHA3-256(preimage ‖ "." ‖ operator), ties broken by address bytes,
/// and keep the first `num_suppliers`. With exactly `num_suppliers` candidates the chain sorts too
/// (`hydrateSessionSuppliers` returns early only on `len < numSuppliersPerSession`), so the order is the weights'.
pub fn select_suppliers(
    start_block_hash: &[u8],
    service_id: &str,
    app_address: &str,
    start: i64,
    candidates: &[String],
    num_suppliers: usize,
) -> Vec<String> {
    if candidates.len() < num_suppliers {
        return candidates.to_vec();
    }
    let pre = session_preimage(start_block_hash, service_id, app_address, start);
    let mut weighted: Vec<(i64, &String)> = candidates
        .iter()
        .map(|operator| {
            let mut input = pre.clone();
            input.push(b'.');
            input.extend_from_slice(operator.as_bytes());
            let digest = sha3_256(&input);
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            (i64::from_be_bytes(first), operator)
        })
        .collect();
    weighted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
    weighted
        .into_iter()
        .take(num_suppliers)
        .map(|(_, op)| op.clone())
        .collect()
}

/// The height a miner sends a session's claim first (`transaction.claim_delay_blocks`): `delay` blocks after the
/// claim window opens, but no later than `buffer` blocks before it closes, and never before it opens. Relays
/// appended before this height are in the claim, so the relayer appends until then.
pub fn first_claim_send_height(claim_open: i64, claim_close: i64, delay: i64, buffer: i64) -> i64 {
    claim_open
        .saturating_add(delay.max(0))
        .min(claim_close.saturating_sub(buffer))
        .max(claim_open)
}

/// Whether a service-config update is active at `h`: activation ≤ h < deactivation (deactivation 0 = never).
pub fn config_active_at(activation: i64, deactivation: i64, h: i64) -> bool {
    activation <= h && (deactivation == 0 || h < deactivation)
}

/// Proof path (§5.2): SHA256(blockHash(proof_open − 1) ‖ ascii(session_id)).
pub fn proof_path(seed_block_hash: &[u8], session_id: &str) -> [u8; 32] {
    let mut input = seed_block_hash.to_vec();
    input.extend_from_slice(session_id.as_bytes());
    sha256(&input)
}

/// Header basic validation (§3): app address valid bech32, session id non-empty, service id valid, start > 0,
/// end > start.
pub fn validate_header(header: &SessionHeader) -> Result<(), SessionError> {
    if !super::address::is_valid_address(&header.application_address) {
        return Err(SessionError::InvalidHeader(
            "application address is not a valid pokt address",
        ));
    }
    if header.session_id.is_empty() {
        return Err(SessionError::InvalidHeader("session id is empty"));
    }
    let service_ok = !header.service_id.is_empty()
        && header.service_id.len() <= 42
        && header
            .service_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !service_ok {
        return Err(SessionError::InvalidHeader("service id is not valid"));
    }
    if header.session_start_block_height <= 0 {
        return Err(SessionError::InvalidHeader("session start height must be positive"));
    }
    if header.session_end_block_height <= header.session_start_block_height {
        return Err(SessionError::InvalidHeader(
            "session end height must be after its start",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_send_waits_the_delay_within_the_window() {
        assert_eq!(first_claim_send_height(10, 14, 1, 1), 11);
        assert_eq!(first_claim_send_height(10, 14, 0, 1), 10);
        assert_eq!(
            first_claim_send_height(10, 14, 5, 1),
            13,
            "clamped to the buffer before the close"
        );
        assert_eq!(
            first_claim_send_height(10, 10, 1, 2),
            10,
            "never before the window opens"
        );
        assert_eq!(first_claim_send_height(10, 14, -3, 1), 10);
    }

    fn default_params() -> SharedParams {
        SharedParams {
            num_blocks_per_session: 10,
            grace_period_end_offset_blocks: 1,
            claim_window_open_offset_blocks: 1,
            claim_window_close_offset_blocks: 4,
            proof_window_open_offset_blocks: 0,
            proof_window_close_offset_blocks: 4,
            ..Default::default()
        }
    }

    #[test]
    fn spec_examples() {
        let w = SessionWindows::new(&default_params(), 10).unwrap();
        assert_eq!((w.start, w.end, w.number), (1, 10, 1));
        assert_eq!(
            (w.claim_open, w.claim_close, w.proof_open, w.proof_close),
            (12, 16, 16, 20)
        );
        assert_eq!(w.proof_seed_height(), 15);
        assert_eq!(
            w.settlement, 20,
            "SettlementSessionEnd = end + 1 + (co+cc+po+pc) = 10 + 1 + 9"
        );
        let main = SharedParams {
            num_blocks_per_session: 20,
            grace_period_end_offset_blocks: 10,
            claim_window_open_offset_blocks: 11,
            claim_window_close_offset_blocks: 10,
            proof_window_open_offset_blocks: 1,
            proof_window_close_offset_blocks: 10,
            ..Default::default()
        };
        let w = SessionWindows::new(&main, 100).unwrap();
        assert_eq!((w.start, w.end, w.number, w.grace_period_end), (81, 100, 5, 110));
        assert_eq!(
            (w.claim_open, w.claim_close, w.proof_open, w.proof_close),
            (112, 122, 123, 133)
        );
        assert_eq!(w.proof_seed_height(), 122);
        assert_eq!(w.settlement, 133, "100 + 1 + (11+10+1+10)");
        let n4 = SharedParams {
            num_blocks_per_session: 4,
            ..default_params()
        };
        let w = SessionWindows::new(&n4, 10).unwrap();
        assert_eq!((w.start, w.end, w.number), (9, 12, 3));
    }

    #[test]
    fn go_pinned_session_ids() {
        let h9 = hex::decode("251665c7cf286a30fbd98acd983c63e9a34efc16496511373405e24eb02a8fb9").unwrap();
        let h5 = hex::decode("261594ddc3c8afc5b4c63f59ee58e89d3a115bcd164c83fd79349de0b1ffd21d").unwrap();
        let app1 = "pokt1mdccn4u38eyjdxkk4h0jaddw4n3c72u82m5m9e";
        let app2 = "pokt133amv5suh75zwkxxcq896azvmmwszg99grvk9f";
        assert_eq!(
            session_id(&h9, "svc1", app1, 9),
            "fea5d6f7544ff6d8af5c22529b2ccf01ed7930b3d454d42dda5ccc0b65b6ebfd"
        );
        assert_eq!(
            session_id(&h5, "svc1", app1, 5),
            "e161348f2153bb41092040c3c287596f8daf98e90986475be21412a1ded945ed"
        );
        assert_eq!(
            session_id(&h5, "svc12", app1, 5),
            "c01eb8924dbb9dae7cab8ed56016ce8fdd2d23542f9e0b7ca8d6972d3fb45ce5"
        );
        assert_eq!(
            session_id(&h5, "svc12", app2, 5),
            "f6dbe4961afd8ff0e444a1159d02bc645f9ded3daaa605c187e6bd7ee2232a68"
        );
    }

    #[test]
    fn anchored_grid_after_blocks_per_session_change() {
        // Epoch 1: N = 60 from block 1; at 831001 governance switched to N = 20 anchored there at session 13851.
        let params = SharedParams {
            num_blocks_per_session: 20,
            session_grid_anchor_height: 831_001,
            session_number_at_anchor: 13_851,
            ..default_params()
        };
        let grid = SessionGrid::new(&params).unwrap();
        assert_eq!(grid.session_start(831_001), 831_001);
        assert_eq!(grid.session_end(831_001), 831_020);
        assert_eq!(grid.session_start(831_035), 831_021);
        assert_eq!(grid.session_number(831_035), 13_852);
        // Below the anchor the grid falls back to (1, 1).
        assert_eq!(grid.session_start(45), 41);
        assert_eq!(grid.session_number(45), 3);
    }

    #[test]
    fn proof_path_golden() {
        let seed = hex::decode("251665c7cf286a30fbd98acd983c63e9a34efc16496511373405e24eb02a8fb9").unwrap();
        let path = proof_path(
            &seed,
            "fea5d6f7544ff6d8af5c22529b2ccf01ed7930b3d454d42dda5ccc0b65b6ebfd",
        );
        assert_eq!(
            hex::encode(path),
            "aef5aea4bdb02d4dd6b60346dde5a6374734085d0a145b736fb827bc9f34c65d"
        );
    }

    #[test]
    fn supplier_selection_is_deterministic_and_bounded() {
        let hash = [7u8; 32];
        let candidates: Vec<String> = (0..10).map(|i| format!("pokt1supplier{i}")).collect();
        let picked = select_suppliers(&hash, "svc", "pokt1app", 1, &candidates, 3);
        assert_eq!(picked.len(), 3);
        assert_eq!(picked, select_suppliers(&hash, "svc", "pokt1app", 1, &candidates, 3));
        let mut reversed = candidates.clone();
        reversed.reverse();
        assert_eq!(
            picked,
            select_suppliers(&hash, "svc", "pokt1app", 1, &reversed, 3),
            "order independent"
        );
        assert_eq!(
            select_suppliers(&hash, "svc", "pokt1app", 1, &candidates[..2], 3),
            candidates[..2].to_vec()
        );
        assert!(config_active_at(5, 0, 5) && config_active_at(5, 10, 9) && !config_active_at(5, 10, 10));
    }

    #[test]
    fn header_validation() {
        let good = SessionHeader {
            application_address: "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4".into(),
            service_id: "anvil".into(),
            session_id: "abc".into(),
            session_start_block_height: 9,
            session_end_block_height: 12,
        };
        validate_header(&good).unwrap();
        for bad in [
            SessionHeader {
                application_address: "nope".into(),
                ..good.clone()
            },
            SessionHeader {
                session_id: String::new(),
                ..good.clone()
            },
            SessionHeader {
                service_id: "bad id!".into(),
                ..good.clone()
            },
            SessionHeader {
                session_start_block_height: 0,
                ..good.clone()
            },
            SessionHeader {
                session_end_block_height: 9,
                ..good.clone()
            },
        ] {
            assert!(validate_header(&bad).is_err(), "{bad:?}");
        }
        // poktroll x/shared/types/service.go IsValidServiceId: non-empty, at most 42 characters of
        // `^[a-zA-Z0-9_-]+$`. Refusing more than the chain would refuse relays it pays for.
        let with = |service_id: &str| {
            validate_header(&SessionHeader {
                service_id: service_id.into(),
                ..good.clone()
            })
        };
        for ok in [
            "a",
            "Eth-Mainnet_2",
            &"x".repeat(42),
            "0123456789_-ABCDEFGHIJKLMNOPQRSTUVWXYZabcd",
        ] {
            assert_eq!(with(ok), Ok(()), "{ok}");
        }
        for bad in ["", &"x".repeat(43), "eth.mainnet", "eth mainnet", "eth/1", "éth"] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_blocks_per_session_is_an_error() {
        let p = SharedParams {
            num_blocks_per_session: 0,
            ..default_params()
        };
        assert_eq!(SessionWindows::new(&p, 5), Err(SessionError::BadBlocksPerSession(0)));
    }

    proptest::proptest! {
        #[test]
        fn windows_are_ordered_and_never_panic(
            n in 0u64..100, grace in 0u64..50, co in 0u64..20, cc in 0u64..20, po in 0u64..20, pc in 0u64..20,
            anchor in -5i64..500, k in -5i64..50, h in -10i64..100_000,
        ) {
            let params = SharedParams {
                num_blocks_per_session: n,
                grace_period_end_offset_blocks: grace,
                claim_window_open_offset_blocks: co,
                claim_window_close_offset_blocks: cc,
                proof_window_open_offset_blocks: po,
                proof_window_close_offset_blocks: pc,
                session_grid_anchor_height: anchor,
                session_number_at_anchor: k,
                ..Default::default()
            };
            if let Ok(w) = SessionWindows::new(&params, h) {
                if h > 0 {
                    proptest::prop_assert!(w.start <= h && h <= w.end);
                    proptest::prop_assert!(w.number >= 1);
                }
                proptest::prop_assert!(w.end < w.claim_open && w.claim_open <= w.claim_close);
                proptest::prop_assert!(w.claim_close <= w.proof_open && w.proof_open <= w.proof_close);
            }
        }
    }
}
