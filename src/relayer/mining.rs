//! Metering and mining of a validated relay: the session's costs (compute units, difficulty target), the relay
//! meter's charge and its refund, and the append of a minable relay to the relay log (module docs of `relayer`,
//! pipeline steps 3–5). Apart from the handler so the life of a charge (taken before the backend, committed or
//! refunded by the relay's outcome) reads in one place.

use std::sync::Arc;

use prost::Message as _;

use super::{RelayError, Relayer, Validated, costs, meter};
use crate::protocol::wire::{MinedRelayMessage, RelayRequest, RelayResponse};
use crate::protocol::{difficulty, relay};

impl Relayer {
    /// The session's compute units and difficulty target ([`costs`]: cached, one fetch per miss).
    pub(super) async fn costs(&self, valid: &Validated) -> Result<Arc<costs::SessionCosts>, RelayError> {
        let h = &valid.header;
        self.costs
            .get(&self.chain, &h.service_id, h.session_start_block_height)
            .await
            .map_err(RelayError::Chain)
    }

    pub(super) async fn charge(&self, valid: &Validated, compute_units: u64) -> Result<meter::Charge, RelayError> {
        let Some(meter) = &self.meter else {
            return Ok(meter::Charge::none());
        };
        let (key, budget) = meter_budget(valid);
        let service_id = valid.header.service_id.as_str();
        match meter.charge(&key, budget, compute_units).await {
            Ok(charge) => {
                self.metrics.meter.with_label_values(&[service_id, "ok"]).inc();
                // A charge abandoned with its relay (the gateway went away) refunds itself: counted as refunded.
                let refunded = self.metrics.meter.with_label_values(&[service_id, "refunded"]);
                Ok(charge.count_abandoned_in(refunded))
            }
            Err(e) => {
                let err = RelayError::from_meter(e);
                self.metrics.meter.with_label_values(&[service_id, err.code().1]).inc();
                Err(err)
            }
        }
    }

    /// Charges a relay already served (optimistic mode) without refusing it: the work is done, and mining it
    /// costs nothing (the chain caps the claim at settlement, without penalty), so dropping it would only lose
    /// what the chain pays. One the meter would have refused is counted as `over_serviced_mined` (over budget) or
    /// `meter_unavailable_mined` (storage down, failing closed) instead of `ok`.
    pub(super) async fn charge_served(&self, valid: &Validated, compute_units: u64) -> meter::Charge {
        let Some(meter) = &self.meter else {
            return meter::Charge::none();
        };
        let (key, budget) = meter_budget(valid);
        let service_id = valid.header.service_id.as_str();
        let (charge, refusal) = meter.force(&key, budget, compute_units).await;
        let result = match refusal {
            None => "ok",
            Some(meter::MeterError::OverServiced { .. }) => "over_serviced_mined",
            Some(meter::MeterError::Unavailable(_)) => "meter_unavailable_mined",
        };
        self.metrics.meter.with_label_values(&[service_id, result]).inc();
        let refunded = self.metrics.meter.with_label_values(&[service_id, "refunded"]);
        charge.count_abandoned_in(refunded)
    }

    /// Refuses, before the backend is called, a relay whose request alone makes it too large for its proof to fit
    /// a tx (`max_mined_relay_bytes`; its relay holds the request whole and the response without its body, §2.3, so
    /// its length is known now): served, it could never be mined, as the miner keeps it out of the claim. Before,
    /// it was served and then dropped as `too_large_to_prove` with its charge refunded: the backend's work given
    /// away, and outside the meter's bound (an application with budget for one relay could have any number).
    /// The limit named is the request's share of it.
    pub(super) fn check_provable(&self, request: &RelayRequest) -> Result<(), RelayError> {
        let Some(limit) = self.max_mined_relay_bytes else {
            return Ok(());
        };
        let least = relay::least_relay_bytes_len(request);
        if least <= limit {
            return Ok(());
        }
        let response_share = least.saturating_sub(request.encoded_len());
        Err(RelayError::RequestTooLarge {
            limit: limit.saturating_sub(response_share),
        })
    }

    pub(super) fn refund(&self, service_id: &str, charge: meter::Charge) {
        if self.meter.is_some() {
            self.metrics.meter.with_label_values(&[service_id, "refunded"]).inc();
        }
        charge.refund();
    }

    /// Appends the relay to the log when it is minable: a non-5xx answer meeting the difficulty at session start
    /// (`costs`, read before the backend was called: nothing here waits on the chain). `arrival` is the height
    /// the relay arrived at (recorded in the mined relay); eligibility is checked with the current height. With
    /// `durable` it returns once the relay is durable.
    ///
    /// Settles the relay's `charge` by the outcome: committed when the relay is appended or below the difficulty
    /// (served and kept), refunded when it is not mined (5xx, too large to prove) or refused (expired session,
    /// failed append). Its callers finish it even when their handler is dropped (module `detach`), so the charge
    /// follows what the relay log holds.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn mine(
        &self,
        request: &RelayRequest,
        response: &RelayResponse,
        valid: &Validated,
        status: u32,
        costs: &costs::SessionCosts,
        arrival: i64,
        durable: bool,
        charge: meter::Charge,
    ) -> Result<(), RelayError> {
        let h = &valid.header;
        if status >= 500 {
            self.metrics.skipped_5xx.with_label_values(&[&h.service_id]).inc();
            self.refund(&h.service_id, charge);
            return Ok(());
        }
        // §2.6 rule 5 again at append time: a relay validated in the grace period may come back from the backend
        // after the claim window opened. The miner sends the claim `claim_delay_blocks` after the window opens, so
        // until then it is still in the claim; later the miner may already have built the claim's root without
        // it: it would be served for nothing (and in HA the miner could only count it as lost), so it is refused.
        let now = *self.height.borrow();
        let claim_sent_at = crate::protocol::session::first_claim_send_height(
            valid.windows.claim_open,
            valid.windows.claim_close,
            self.claim_delay_blocks,
            self.submission_buffer_blocks,
        );
        if now >= claim_sent_at {
            self.refund(&h.service_id, charge);
            return Err(RelayError::SessionExpired {
                end: h.session_end_block_height,
                height: now,
            });
        }
        let bytes = relay::relay_bytes(request, response);
        // The miner keeps a relay too large for its proof to fit a tx out of the claim; not appended here either,
        // so it is neither counted mined nor charged to the application's stake. `check_provable` refused such a
        // request before the backend; only a response longer than its least (a relay-miner error) gets here.
        if self.max_mined_relay_bytes.is_some_and(|limit| bytes.len() > limit) {
            self.metrics
                .dropped
                .with_label_values(&[&h.service_id, "too_large_to_prove"])
                .inc();
            self.refund(&h.service_id, charge);
            return Ok(());
        }
        let hash = relay::relay_hash(&bytes);
        // The very same relay appended lately (module `recent`): the trie holds it once, so it is paid once;
        // served again, not appended or charged again.
        if self.recent.contains(&hash) {
            self.metrics
                .dropped
                .with_label_values(&[&h.service_id, "duplicate"])
                .inc();
            self.refund(&h.service_id, charge);
            return Ok(());
        }
        let start = h.session_start_block_height;
        if !difficulty::is_volume_applicable(&hash, &costs.target) {
            self.metrics
                .skipped_difficulty
                .with_label_values(&[&h.service_id])
                .inc();
            // Kept and charged once; its repeats are not charged again.
            self.recent.insert(hash);
            charge.commit();
            return Ok(());
        }
        let message = MinedRelayMessage {
            relay_hash: hash.to_vec(),
            relay_bytes: bytes,
            compute_units_per_relay: costs.compute_units,
            session_id: h.session_id.clone(),
            session_end_height: h.session_end_block_height,
            supplier_operator_address: valid.supplier.clone(),
            service_id: h.service_id.clone(),
            application_address: h.application_address.clone(),
            arrival_block_height: arrival,
            published_at_unix_nano: 0,
            session_start_height: start,
        };
        let mined = storage::MinedRelay {
            supplier: valid.supplier.clone(),
            session_id: h.session_id.clone(),
            session_end_height: h.session_end_block_height.max(0) as u64,
            relay_hash: hash.to_vec(),
            payload: message.encode_to_vec(),
        };
        if !durable {
            // The charge is settled by the relay's batch: kept when it is appended, refunded when it failed (a
            // relay not in the log is not paid; module `log`). Recorded in `recent` once its batch is appended: a
            // repeat before that is appended again (paid once, charged twice), one after it is not charged again.
            // Counted as mined then too, not when queued: a queued relay is lost with its batch if that fails.
            let recent = Arc::clone(&self.recent);
            let counted = self.metrics.mined.with_label_values(&[&h.service_id]);
            let appended: super::log::Appended = Box::new(move || {
                recent.insert(hash);
                counted.inc();
            });
            return match self
                .appender
                .append_eventually(mined, &h.service_id, charge, Some(appended))
                .await
            {
                Ok(()) => Ok(()),
                Err((e, charge)) => {
                    self.refund(&h.service_id, charge);
                    Err(RelayError::from_storage(e))
                }
            };
        }
        match self.appender.append(mined, &h.service_id).await {
            Ok(()) => {
                self.recent.insert(hash);
                self.metrics.mined.with_label_values(&[&h.service_id]).inc();
                charge.commit();
                Ok(())
            }
            Err(e) => {
                self.refund(&h.service_id, charge);
                Err(RelayError::from_storage(e))
            }
        }
    }
}

/// The meter key and budget of a validated relay: its supplier's share of the app's stake and
/// `per_session_spend_limit` as the validation read them, net of the global inflation settlement counts against it
/// ([`meter::Budget::from_stake`]).
fn meter_budget(valid: &Validated) -> (meter::MeterKey, meter::Budget) {
    let key = meter::MeterKey {
        session_id: valid.header.session_id.clone(),
        supplier: valid.supplier.clone(),
    };
    let budget = meter::Budget::from_stake(
        valid.app_stake_upokt,
        valid.app_spend_limit_upokt,
        valid.session_suppliers,
        valid.pending_sessions,
        valid.global_inflation_per_claim,
        valid.compute_units_to_tokens_multiplier,
        valid.compute_unit_cost_granularity,
        valid.windows.claim_open,
    );
    (key, budget)
}
