//! Shrinking a divergence: drop runs of operations (halves first, then
//! smaller) while the shortened sequence, re-predicted by the model, still
//! fails at its last operation — the one that diverged — in a fresh guest.

use super::sequence::Planned;
use super::universe::Universe;
use crate::model::{Op, Outcome};

/// Re-predicts `ops` from an empty kernel; `None` if one is no longer
/// meaningful (it referred to a state an earlier, dropped operation made).
pub fn replan(u: &Universe, ops: &[Op]) -> Option<Vec<Planned>> {
    let mut k = u.kernel();
    let mut out = Vec::new();
    for op in ops {
        let prediction = k.step(op);
        if matches!(prediction.outcome, Outcome::Invalid(_)) {
            return None;
        }
        out.push(Planned { op: op.clone(), prediction, after: k.observe() });
    }
    Some(out)
}

/// The shortest sequence found whose last operation still diverges.
/// `still_fails` runs a candidate (in a fresh guest); at most `budget` runs.
pub fn shrink(u: &Universe, ops: &[Op], budget: usize, mut still_fails: impl FnMut(&[Planned]) -> bool) -> Vec<Op> {
    let mut best = ops.to_vec();
    let mut runs = 0;
    let mut size = best.len() / 2;
    while size >= 1 && runs < budget {
        let mut shrank = false;
        // The last operation is the divergence: never drop it.
        let mut start = best.len().saturating_sub(1 + size);
        loop {
            if runs >= budget {
                break;
            }
            let cand: Vec<Op> = best[..start].iter().chain(&best[start + size..]).cloned().collect();
            if let Some(plan) = replan(u, &cand) {
                runs += 1;
                if still_fails(&plan) {
                    best = cand;
                    shrank = true;
                }
            }
            if start == 0 {
                break;
            }
            start = start.saturating_sub(size);
            if start + size >= best.len() {
                start = best.len().saturating_sub(1 + size);
            }
        }
        if !shrank {
            size /= 2;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::rng::Rng;
    use crate::model::Features;

    #[test]
    fn shrinks_to_the_operations_the_failure_needs() {
        let f = Features::new(&["replace", "states"], &["replace", "stack_order", "patched"]);
        let mut rng = Rng::new(5);
        let u = Universe::generate(&f, &mut rng, 3);
        let (a, b) = (u.patches[0].name.clone(), u.patches[1].name.clone());
        // A long sequence whose "divergence" needs a loaded and then b loaded last.
        let mut ops = vec![Op::LoadTarget("klpx_t2".into()), Op::Load(a.clone()), Op::LoadTarget("klpx_t1".into())];
        ops.extend([Op::UnloadTarget("klpx_t2".into()), Op::LoadTarget("klpx_t2".into())]);
        ops.push(Op::Load(b.clone()));
        let needs = |p: &[Planned]| {
            p.last().is_some_and(|l| l.op == Op::Load(b.clone())) && p.iter().any(|x| x.op == Op::Load(a.clone()))
        };
        assert!(needs(&replan(&u, &ops).expect("meaningful")));
        let small = shrink(&u, &ops, 50, needs);
        assert_eq!(small, [Op::Load(a), Op::Load(b)]);
    }
}
