//! One power cut of a crash loop: chosen at random ([`Plan::random`]) and
//! carried out on a running child process ([`PowerCutMount::cut_and_kill`]):
//! cut (or wait for the armed cut), kill the child, power back on.
//!
//! This module owns the order of those steps, so that every crash suite cuts
//! the same way: the power goes first, so nothing the child does afterwards
//! reaches the disk, and the child is dead before the power returns, so no
//! process that mapped a file before the cut sees the disk after it. It never
//! decides when to cut (the suite sleeps a random delay first) and never
//! asserts anything about timing: an armed cut that does not fire in time
//! becomes an immediate cut, and is reported as such.

use std::io;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::model::CutMode;
use crate::mount::PowerCutMount;

/// How long an armed cut may take to fire before the power is cut anyway.
/// Not a test assertion: a child that made fewer calls (it finished, or it
/// waits) only turns the cycle into an immediate cut.
const ARMED_WAIT: Duration = Duration::from_secs(2);

/// How often the armed cut is checked for.
const POLL: Duration = Duration::from_millis(1);

/// How one cycle takes the power away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Cut now, in this mode.
    Cut(CutMode),
    /// Cut at the Nth mutating call from now (that call fails with `EIO`).
    Arm(u64, CutMode),
}

impl Plan {
    /// A random plan: half the time an immediate cut, half the time a cut
    /// armed at a call in `1..=max_nth`; the mode uniform over
    /// [`CutMode::Now`], [`CutMode::Prefix`], [`CutMode::Subset`] and
    /// [`CutMode::Bytes`], with a seed from `rng`.
    pub fn random(rng: &mut impl Rng, max_nth: u64) -> Plan {
        let seed = rng.gen();
        let mode = match rng.gen_range(0..4) {
            0 => CutMode::Now,
            1 => CutMode::Prefix(seed),
            2 => CutMode::Subset(seed),
            _ => CutMode::Bytes(seed),
        };
        if rng.gen_bool(0.5) {
            Plan::Arm(rng.gen_range(1..=max_nth.max(1)), mode)
        } else {
            Plan::Cut(mode)
        }
    }
}

impl Plan {
    /// The same plan (at once, or armed at the same call) with another mode.
    pub fn with_mode(self, mode: CutMode) -> Plan {
        match self {
            Plan::Cut(_) => Plan::Cut(mode),
            Plan::Arm(nth, _) => Plan::Arm(nth, mode),
        }
    }
}

/// What [`PowerCutMount::cut_and_kill`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Cut at once ([`Plan::Cut`]).
    Cut,
    /// The armed cut fired: some call of the child failed with `EIO` and cut the power.
    ArmedFired,
    /// The armed cut did not fire within its wait (or the child exited): cut at once instead.
    ArmedUnfired,
}

impl PowerCutMount {
    /// Carries out `plan` while `child` runs on the mount: cuts the power
    /// (or waits for the armed cut to fire), kills and reaps the child, and
    /// powers back on. The child may already have exited (an armed cut's
    /// `EIO` can end it); that is not an error.
    pub fn cut_and_kill(&self, plan: Plan, child: &mut Child) -> io::Result<Outcome> {
        let (outcome, mode) = match plan {
            Plan::Cut(mode) => (Outcome::Cut, mode),
            Plan::Arm(nth, mode) => {
                self.arm(nth, mode);
                (self.wait_for_armed_cut(child)?, mode)
            }
        };
        // Does nothing if the armed cut already turned the power off.
        self.cut(mode);
        match child.kill() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {} // it had exited
            Err(e) => return Err(e),
        }
        child.wait()?;
        self.power_on();
        Ok(outcome)
    }

    fn wait_for_armed_cut(&self, child: &mut Child) -> io::Result<Outcome> {
        let started = Instant::now();
        while started.elapsed() < ARMED_WAIT {
            if !self.powered() {
                return Ok(Outcome::ArmedFired);
            }
            if child.try_wait()?.is_some() {
                break;
            }
            thread::sleep(POLL);
        }
        Ok(if self.powered() { Outcome::ArmedUnfired } else { Outcome::ArmedFired })
    }
}
