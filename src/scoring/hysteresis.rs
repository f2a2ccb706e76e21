//! Alert hysteresis per asset: an alert fires after `fire_windows` consecutive windows at or
//! above the threshold, and clears at the first window below the (lower) clear threshold.

use std::collections::HashMap;
use std::sync::Mutex;

/// What a window did to an asset's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changes.
    Stay,
    /// Enough consecutive windows at or above the threshold: open an alert.
    Fire,
    /// Below the clear threshold while an alert may be open: clear it.
    Clear,
}

/// What this process knows of an asset's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlertState {
    /// Not known since the start (another replica or an earlier run may have opened one).
    Unknown,
    /// Opened (or found open) by this process.
    Open,
    /// Cleared, or known not to be open.
    Closed,
}

/// Counts live in memory, the open alert in the database; the database is only touched on a
/// transition, so steady risky or calm windows cost no query.
#[derive(Debug, Default)]
pub struct Hysteresis {
    state: Mutex<HashMap<String, (u32, AlertState)>>,
}

impl Hysteresis {
    /// Records one window's level and says what to do.
    pub fn observe(
        &self,
        asset: &str,
        level: f64,
        threshold: f64,
        clear_threshold: f64,
        fire_windows: u32,
    ) -> Transition {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (above, alert) = state
            .entry(asset.to_owned())
            .or_insert((0, AlertState::Unknown));
        if level >= threshold {
            *above = above.saturating_add(1);
            if *above >= fire_windows.max(1) && *alert != AlertState::Open {
                *alert = AlertState::Open;
                return Transition::Fire;
            }
        } else {
            *above = 0;
            if level < clear_threshold && *alert != AlertState::Closed {
                *alert = AlertState::Closed;
                return Transition::Clear;
            }
        }
        Transition::Stay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_fires_after_n_windows_and_clears_below_the_lower_threshold() {
        let h = Hysteresis::default();
        let observe = |p: f64| h.observe("a", p, 0.5, 0.3, 3);
        // Unknown state after a start: the first calm window checks for an open alert.
        assert_eq!(observe(0.1), Transition::Clear);
        assert_eq!(observe(0.6), Transition::Stay);
        assert_eq!(observe(0.7), Transition::Stay);
        assert_eq!(
            observe(0.4),
            Transition::Stay,
            "a dip resets the count but does not clear"
        );
        assert_eq!(observe(0.6), Transition::Stay);
        assert_eq!(observe(0.6), Transition::Stay);
        assert_eq!(observe(0.9), Transition::Fire);
        assert_eq!(
            observe(0.4),
            Transition::Stay,
            "between the thresholds the alert holds"
        );
        assert_eq!(observe(0.2), Transition::Clear);
        assert_eq!(observe(0.2), Transition::Stay, "cleared once");
    }
}
