//! Shrinking a divergence. Candidates are re-predicted by the model and
//! re-run in fresh guests; one is kept when it still fails at its last
//! operation (the one that diverged) the same way. Rounds alternate:
//! drop runs of operations (halves first, then smaller), then simplify the
//! patches those operations name (one function fewer, no states, no
//! `replace`), until a round changes nothing or the budget is spent.

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

/// The smallest universe and sequence found whose last operation still
/// diverges. `still_fails` runs a candidate (the universe holds only the
/// patches the sequence names) in a fresh guest; at most `budget` runs.
pub fn shrink(
    u: &Universe,
    ops: &[Op],
    budget: usize,
    mut still_fails: impl FnMut(&Universe, &[Planned]) -> bool,
) -> (Universe, Vec<Op>) {
    let mut best = (u.only(ops), ops.to_vec());
    let mut runs = 0;
    let mut try_one = |u: &Universe, ops: &[Op], runs: &mut usize| -> bool {
        let Some(plan) = replan(u, ops) else { return false };
        *runs += 1;
        still_fails(u, &plan)
    };
    loop {
        let before = (best.1.len(), size(&best.0));
        // Operations.
        let mut width = best.1.len() / 2;
        while width >= 1 && runs < budget {
            let mut shrank = false;
            // The last operation is the divergence: never drop it.
            let mut start = best.1.len().saturating_sub(1 + width);
            while runs < budget {
                let cand: Vec<Op> = best.1[..start].iter().chain(&best.1[start + width..]).cloned().collect();
                let cu = best.0.only(&cand);
                if try_one(&cu, &cand, &mut runs) {
                    best = (cu, cand);
                    shrank = true;
                }
                if start == 0 {
                    break;
                }
                start = start.saturating_sub(width);
                if start + width >= best.1.len() {
                    start = best.1.len().saturating_sub(1 + width);
                }
            }
            if !shrank {
                width /= 2;
            }
        }
        // Patches.
        let mut i = 0;
        while runs < budget {
            let Some(cu) = simplified(&best.0, i) else { break };
            if try_one(&cu, &best.1, &mut runs) {
                best.0 = cu;
            } else {
                i += 1;
            }
        }
        if (best.1.len(), size(&best.0)) == before || runs >= budget {
            return best;
        }
    }
}

/// Functions, states and flags in all: what patch simplification lowers.
fn size(u: &Universe) -> usize {
    u.patches.iter().map(|p| p.funcs.len() + p.states.len() + p.replace as usize).sum()
}

/// The `i`-th one-step simplification of `u`'s patches: drop one function
/// (a patch keeps at least one), drop the states, clear `replace`.
fn simplified(u: &Universe, mut i: usize) -> Option<Universe> {
    for (pi, p) in u.patches.iter().enumerate() {
        let mut variants = Vec::new();
        if p.funcs.len() > 1 {
            for fi in 0..p.funcs.len() {
                let mut q = p.clone();
                q.funcs.remove(fi);
                variants.push(q);
            }
        }
        if !p.states.is_empty() {
            variants.push(crate::model::PatchSpec { states: vec![], ..p.clone() });
        }
        if p.replace {
            variants.push(crate::model::PatchSpec { replace: false, ..p.clone() });
        }
        if i < variants.len() {
            let mut out = u.clone();
            out.patches[pi] = variants.swap_remove(i);
            return Some(out);
        }
        i -= variants.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::rng::Rng;
    use crate::model::{Features, FuncKey};

    fn universe() -> Universe {
        let f = Features::new(&["replace", "states"], &["replace", "stack_order", "patched"]);
        Universe::generate(&f, &mut Rng::new(5), 3)
    }

    #[test]
    fn shrinks_to_the_operations_the_failure_needs() {
        let u = universe();
        let (a, b) = (u.patches[0].name.clone(), u.patches[1].name.clone());
        // A long sequence whose "divergence" needs a loaded and then b loaded last.
        let mut ops = vec![Op::LoadTarget("klpx_t2".into()), Op::Load(a.clone()), Op::LoadTarget("klpx_t1".into())];
        ops.extend([Op::UnloadTarget("klpx_t2".into()), Op::LoadTarget("klpx_t2".into())]);
        ops.push(Op::Load(b.clone()));
        let needs = |_: &Universe, p: &[Planned]| {
            p.last().is_some_and(|l| l.op == Op::Load(b.clone())) && p.iter().any(|x| x.op == Op::Load(a.clone()))
        };
        assert!(needs(&u, &replan(&u, &ops).expect("meaningful")));
        let (small, ops) = shrink(&u, &ops, 80, needs);
        assert_eq!(ops, [Op::Load(a.clone()), Op::Load(b.clone())]);
        // Only the two patches are left, each with one function and nothing else.
        assert_eq!(small.patches.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), [a.as_str(), b.as_str()]);
        for p in &small.patches {
            assert_eq!((p.funcs.len(), p.states.len(), p.replace), (1, 0, false), "{p:?}");
        }
    }

    #[test]
    fn keeps_the_function_the_failure_needs() {
        let mut u = universe();
        let key = FuncKey::new("vmlinux", "version_proc_show");
        let p = &mut u.patches[0];
        p.funcs = vec![
            FuncKey::new("vmlinux", "cmdline_proc_show"),
            key.clone(),
            FuncKey::new("vmlinux", "meminfo_proc_show"),
        ];
        let name = p.name.clone();
        let ops = vec![Op::Load(name.clone())];
        // Fails only while the patch replaces version_proc_show.
        let needs = |u: &Universe, _: &[Planned]| u.patches.iter().any(|p| p.name == name && p.funcs.contains(&key));
        let (small, ops2) = shrink(&u, &ops, 20, needs);
        assert_eq!(ops2, ops);
        assert_eq!(small.patches[0].funcs, [key]);
    }

    #[test]
    fn stays_within_its_budget() {
        let u = universe();
        let ops: Vec<Op> = u.patches.iter().map(|p| Op::Load(p.name.clone())).collect();
        let mut runs = 0;
        let _ = shrink(&u, &ops, 3, |_, _| {
            runs += 1;
            true
        });
        assert_eq!(runs, 3);
    }
}
