//! Real-time order: when each revision of one key can have taken effect.
//!
//! Revision `r` takes effect at some instant `t_r` inside its write's
//! window, after `t_{r-1}`. An operation that saw revision `v` constrains
//! the chain from both sides: `v` took effect before it returned
//! (`t_v <= return`) and `v + 1` had not yet when it began
//! (`t_{v+1} >= invoke`). These are bounds on single revisions plus the
//! chain order, so the earliest assignment — each revision at the latest of
//! its own lower bounds and its predecessor's point — is the least
//! solution: if it breaks an upper bound, every assignment does. Bounds are
//! inclusive, so timestamps that tie never fail a history.

/// An interval on the monotonic clock; `u64::MAX` as `end` when the
/// operation never returned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub start: u64,
    pub end: u64,
}

/// An operation that saw one revision during its window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sighting {
    pub revision: u64,
    pub window: Window,
    /// The caller's index of the observation, for messages.
    pub index: usize,
}

/// What forces a revision to take effect no earlier than some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Floor {
    /// No constraint yet.
    None,
    /// The write of this revision was invoked then.
    Invoked { revision: u64 },
    /// This observation began then and still saw the revision before.
    SawPrevious { index: usize },
}

/// What forces a revision to take effect no later than some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ceiling {
    /// The write of this revision returned then.
    Returned,
    /// This observation returned then, having seen the revision.
    Saw { index: usize },
}

/// A revision with no instant left to take effect.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Impossible {
    pub revision: u64,
    pub floor_at: u64,
    pub floor: Floor,
    pub ceiling_at: u64,
    pub ceiling: Ceiling,
}

/// The earliest and latest instants each revision can take effect at,
/// indexed by revision: index 0 is "never written" (always in force from
/// the beginning), index `top + 1` is a revision that never comes.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub earliest: Vec<u64>,
    pub latest: Vec<u64>,
}

impl Schedule {
    /// Whether revision `v` can have been the current one at some instant
    /// of `window` (a necessary condition, used for operations that saw one
    /// of several revisions).
    pub fn could_be_current(&self, v: u64, window: Window) -> bool {
        let Ok(v) = usize::try_from(v) else {
            return false;
        };
        let (Some(&from), Some(&until)) = (self.earliest.get(v), self.latest.get(v + 1)) else {
            return false;
        };
        from <= window.end && until >= window.start
    }
}

/// Assigns each revision `1..=writes.len()` (window `writes[r - 1]`) its
/// earliest instant, or reports the first revision left without one.
pub(crate) fn schedule(writes: &[Window], sightings: &[Sighting]) -> Result<Schedule, Impossible> {
    let top = writes.len();
    let mut floors: Vec<(u64, Floor)> = writes
        .iter()
        .enumerate()
        .map(|(i, w)| {
            (
                w.start,
                Floor::Invoked {
                    revision: i as u64 + 1,
                },
            )
        })
        .collect();
    let mut ceilings: Vec<(u64, Ceiling)> =
        writes.iter().map(|w| (w.end, Ceiling::Returned)).collect();
    for s in sightings {
        let Ok(v) = usize::try_from(s.revision) else {
            continue;
        };
        // Seeing v bounds v from above and v + 1 from below.
        if (1..=top).contains(&v) && s.window.end < ceilings[v - 1].0 {
            ceilings[v - 1] = (s.window.end, Ceiling::Saw { index: s.index });
        }
        if v < top && s.window.start > floors[v].0 {
            floors[v] = (s.window.start, Floor::SawPrevious { index: s.index });
        }
    }
    let mut earliest = Vec::with_capacity(top + 2);
    earliest.push(0);
    let mut current = (0u64, Floor::None);
    for r in 1..=top {
        if floors[r - 1].0 > current.0 {
            current = floors[r - 1];
        }
        let (ceiling_at, ceiling) = ceilings[r - 1];
        if current.0 > ceiling_at {
            return Err(Impossible {
                revision: r as u64,
                floor_at: current.0,
                floor: current.1,
                ceiling_at,
                ceiling,
            });
        }
        earliest.push(current.0);
    }
    earliest.push(u64::MAX);
    let mut latest = vec![u64::MAX; top + 2];
    for r in (1..=top).rev() {
        latest[r] = latest[r + 1].min(ceilings[r - 1].0);
    }
    latest[0] = 0;
    Ok(Schedule { earliest, latest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: u64, end: u64) -> Window {
        Window { start, end }
    }

    #[test]
    fn overlapping_writes_may_take_effect_in_either_order() {
        let s = schedule(&[w(10, 40), w(5, 30)], &[]).unwrap();
        assert_eq!(s.earliest, vec![0, 10, 10, u64::MAX]);
    }

    #[test]
    fn a_write_after_a_returned_one_cannot_come_first() {
        let e = schedule(&[w(50, 60), w(10, 20)], &[]).unwrap_err();
        assert_eq!(e.revision, 2);
        assert_eq!(e.floor, Floor::Invoked { revision: 1 });
    }

    #[test]
    fn a_sighting_of_the_old_revision_pushes_the_next_one_later() {
        let seen_old = Sighting {
            revision: 1,
            window: w(35, 36),
            index: 0,
        };
        let e = schedule(&[w(0, 5), w(10, 30)], &[seen_old]).unwrap_err();
        assert_eq!(e.revision, 2);
        assert_eq!(e.floor, Floor::SawPrevious { index: 0 });
        assert_eq!(e.ceiling, Ceiling::Returned);
    }
}
