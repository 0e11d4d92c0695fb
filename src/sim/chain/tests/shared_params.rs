//! A shared params change that moves no session timing is live at once on chain (poktroll `recordParamsHistory`,
//! `x/shared/keeper/msg_server_update_param.go`), while `ParamsAtHeight` of the current session keeps the old
//! values until the next session start: a claim of the session in flight is still priced at its start's rate.

use super::*;

#[tokio::test]
async fn compute_unit_economics_are_live_at_once_and_at_height_from_the_next_session() {
    let f = fixture(0.0).await;
    let w = windows(&f);
    assert!(f.chain.height() < w.end, "the fixture stands inside its session");
    let mut shared = f.chain.state().shared.clone();
    shared.compute_units_to_tokens_multiplier = 84_000_000;
    shared.compute_unit_cost_granularity = 2_000_000;
    f.chain.set_shared_params(shared).unwrap();
    f.chain.produce_block();
    {
        let s = f.chain.state();
        assert_eq!(
            (
                s.shared.compute_units_to_tokens_multiplier,
                s.shared.compute_unit_cost_granularity
            ),
            (84_000_000, 2_000_000),
            "live in the block that made the change"
        );
        assert_eq!(
            (s.shared.session_grid_anchor_height, s.shared.session_number_at_anchor),
            (1, 1),
            "the live grid anchor is kept"
        );
    }
    let at_start = f.client.shared_params_at(w.start).await.unwrap();
    assert_eq!(at_start.compute_units_to_tokens_multiplier, 42_000_000);
    let next = f.client.shared_params_at(w.end + 1).await.unwrap();
    assert_eq!(
        (
            next.compute_units_to_tokens_multiplier,
            next.compute_unit_cost_granularity,
            next.session_grid_anchor_height
        ),
        (84_000_000, 2_000_000, 1),
        "no change of blocks per session: the anchor carried, not moved"
    );
    // The session in flight settles at the rate of its start: 3 relays × 10 compute units × 42.
    let mut trie = trie_with(&f, 3, 10);
    advance_to(&f.chain, w.claim_open - 1);
    let rejected = rejection_in_block(&f, claim_msg(&f, &f.header, &trie.root()), &f.supplier).await;
    assert_eq!(rejected, None);
    advance_to(&f.chain, w.settlement);
    assert_eq!(f.chain.settlements()[0].2, Settlement::Settled(1_260));
}
