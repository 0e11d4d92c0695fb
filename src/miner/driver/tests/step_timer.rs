//! The miner iteration's timing report: a stalled iteration is a WARN whatever the log level, an ordinary one
//! with a new block a DEBUG line, an idle poll nothing.

use std::time::Duration;

use tracing::Level;

use super::super::iteration::StepTimer;

#[test]
fn a_stalled_iteration_is_a_warning_an_ordinary_block_a_debug_line_an_idle_poll_nothing() {
    let mut timer = StepTimer::start();
    assert_eq!(timer.level(Duration::from_millis(5)), None);
    assert_eq!(timer.level(StepTimer::SLOW), Some(Level::DEBUG));
    timer.new_block = true;
    assert_eq!(timer.level(Duration::from_millis(5)), Some(Level::DEBUG));
    assert_eq!(timer.level(Duration::from_millis(1999)), Some(Level::DEBUG));
    assert_eq!(timer.level(StepTimer::STALLED), Some(Level::WARN));
    timer.new_block = false;
    assert_eq!(timer.level(Duration::from_secs(30)), Some(Level::WARN));
}
