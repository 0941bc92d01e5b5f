//! Random operation sequences the model accepts as meaningful (it answers
//! success or a refusal, never "invalid"), with its prediction for each.

use super::rng::Rng;
use super::universe::Universe;
use crate::model::{Kernel, Observation, Op, Outcome, Prediction, Semantics};

/// One operation with what the model expects of it and of the kernel after it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub op: Op,
    pub prediction: Prediction,
    pub after: Observation,
}

/// Every operation the universe allows, meaningful or not, with its weight.
fn candidates(u: &Universe, sem: Semantics) -> Vec<(Op, u32)> {
    let mut out = Vec::new();
    for p in &u.patches {
        let n = p.name.clone();
        out.push((Op::Load(n.clone()), 12));
        out.push((Op::Disable(n.clone()), 6));
        out.push((Op::Enable(n.clone()), 1));
        out.push((Op::Force(n.clone()), 2));
        out.push((Op::Unload(n.clone()), 5));
        if sem == Semantics::V1Replaceable {
            out.push((Op::SetReplaceable(n.clone(), true), 2));
            out.push((Op::SetReplaceable(n, false), 2));
        }
    }
    for t in &u.targets {
        out.push((Op::LoadTarget(t.name.clone()), 6));
        out.push((Op::UnloadTarget(t.name.clone()), 2));
    }
    if let Some(k) = u.park() {
        out.push((Op::Park(k), 8));
        out.push((Op::Release, 6));
    }
    out
}

/// `n` operations from the empty kernel `model`, chosen by `rng`.
pub fn generate(u: &Universe, model: &mut Kernel, rng: &mut Rng, n: usize) -> Vec<Planned> {
    let all = candidates(u, model.semantics());
    let mut out = Vec::new();
    for _ in 0..n {
        // A held transition is rare and short: while one is open, what
        // the kernel refuses during it is the interesting part.
        let held = model.in_transition();
        let choices: Vec<(Op, u32, Kernel, Prediction)> = all
            .iter()
            .filter_map(|(op, w)| {
                let mut m = model.clone();
                let pr = m.step(op);
                // Refusals stay reachable but do not crowd out the rest.
                let w = match (&pr.outcome, op) {
                    (Outcome::Invalid(_), _) => return None,
                    (_, Op::Release | Op::Force(_)) if held => 2,
                    (Outcome::Refused(_), _) if !held => (*w / 4).max(1),
                    _ => *w,
                };
                Some((op.clone(), w, m, pr))
            })
            .collect();
        if choices.is_empty() {
            break;
        }
        let weights: Vec<u32> = choices.iter().map(|c| c.1).collect();
        let (op, _, next, prediction) = choices.into_iter().nth(rng.weighted(&weights)).expect("index in range");
        *model = next;
        out.push(Planned { op, prediction, after: model.observe() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Features;

    #[test]
    fn same_seed_same_sequence_and_only_meaningful_ops() {
        let f = Features::new(&["replace_set", "states"], &["replace_set", "stack_order", "patched"]);
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let u = Universe::generate(&f, &mut rng, 5);
            let mut k = u.kernel();
            generate(&u, &mut k, &mut rng, 200)
        };
        let a = run(42);
        let b = run(42);
        assert_eq!(a.len(), 200);
        assert_eq!(
            a.iter().map(|p| p.op.clone()).collect::<Vec<_>>(),
            b.iter().map(|p| p.op.clone()).collect::<Vec<_>>()
        );
        assert_ne!(
            a.iter().map(|p| p.op.clone()).collect::<Vec<_>>(),
            run(43).iter().map(|p| p.op.clone()).collect::<Vec<_>>()
        );
    }
}
