//! Shrinking a divergence. Candidates are re-predicted by the model and
//! re-run in fresh guests; one is kept when it still fails at its last
//! operation (the one that diverged) the same way. Rounds alternate:
//! drop everything done to one patch, target or the observer; drop runs of
//! operations (halves first, then smaller); simplify the patches left (one
//! function fewer, no states, no `replace`); until a round changes nothing
//! or the budget is spent.

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

/// A candidate: a universe (only the patches its operations name) and the
/// model's plan for the operations.
pub type Candidate = (Universe, Vec<Planned>);

/// The smallest universe and sequence found whose last operation still
/// diverges. `still_fails` runs a batch of up to `jobs` candidates, each in
/// a fresh guest, and says which still fail; at most `budget` runs in all.
/// Of a batch, the first candidate (in order) that fails wins, so a result
/// does not depend on how the guests were scheduled.
pub fn shrink(
    u: &Universe,
    ops: &[Op],
    budget: usize,
    jobs: usize,
    mut still_fails: impl FnMut(&[Candidate]) -> Vec<bool>,
) -> (Universe, Vec<Op>) {
    let mut best = (u.only(ops), ops.to_vec());
    let mut runs = 0;
    // The first candidate of `cands` that still fails, if any within budget.
    let mut first_failing = |cands: Vec<(Universe, Vec<Op>)>, runs: &mut usize| -> Option<(Universe, Vec<Op>)> {
        let meaningful: Vec<(Universe, Vec<Op>, Vec<Planned>)> =
            cands.into_iter().filter_map(|(u, o)| replan(&u, &o).map(|p| (u, o, p))).collect();
        for chunk in meaningful.chunks(jobs.max(1)) {
            let chunk = &chunk[..chunk.len().min(budget.saturating_sub(*runs))];
            if chunk.is_empty() {
                return None;
            }
            *runs += chunk.len();
            let batch: Vec<Candidate> = chunk.iter().map(|(u, _, p)| (u.clone(), p.clone())).collect();
            if let Some(i) = still_fails(&batch).iter().position(|&f| f) {
                return Some((chunk[i].0.clone(), chunk[i].1.clone()));
            }
        }
        None
    };
    loop {
        let before = (best.1.len(), size(&best.0));
        // Everything done to one patch, one target, or the observer.
        while let Some(b) =
            first_failing(without_groups(&best.1).into_iter().map(|o| (best.0.only(&o), o)).collect(), &mut runs)
        {
            best = b;
        }
        // Runs of operations, halves first.
        let mut width = best.1.len() / 2;
        while width >= 1 {
            match first_failing(
                without_runs(&best.1, width).into_iter().map(|o| (best.0.only(&o), o)).collect(),
                &mut runs,
            ) {
                Some(b) => best = b,
                None => width /= 2,
            }
            width = width.min(best.1.len().saturating_sub(1));
        }
        // Patches.
        while let Some(b) =
            first_failing(simplifications(&best.0).into_iter().map(|u| (u, best.1.clone())).collect(), &mut runs)
        {
            best = b;
        }
        if (best.1.len(), size(&best.0)) == before || runs >= budget {
            return best;
        }
    }
}

/// What names a patch, a target or the observer: the groups of operations
/// that only make sense together (a load and its disable).
fn group(op: &Op) -> String {
    match op {
        Op::Load(p) | Op::Disable(p) | Op::Enable(p) | Op::Force(p) | Op::Unload(p) | Op::SetReplaceable(p, _) => {
            format!("patch {p}")
        }
        Op::LoadTarget(m) | Op::UnloadTarget(m) => format!("target {m}"),
        Op::Park(_) | Op::Release => "observer".into(),
    }
}

/// Whether `op` ends an episode of its group: an unload, a release.
fn ends(op: &Op) -> bool {
    matches!(op, Op::Unload(_) | Op::UnloadTarget(_) | Op::Release)
}

/// `ops` without one group's operations, and without one episode of a
/// group (from a load to its unload: a patch loaded, disabled and unloaded
/// before it is loaded again); the last operation stays. Largest first.
fn without_groups(ops: &[Op]) -> Vec<Vec<Op>> {
    let Some((last, rest)) = ops.split_last() else { return vec![] };
    let mut groups: Vec<String> = rest.iter().map(group).collect();
    groups.sort();
    groups.dedup();
    let mut drops: Vec<Vec<usize>> = Vec::new();
    for g in &groups {
        let mine: Vec<usize> = (0..rest.len()).filter(|&i| group(&rest[i]) == *g).collect();
        drops.push(mine.clone());
        let mut episode = Vec::new();
        for &i in &mine {
            episode.push(i);
            if ends(&rest[i]) {
                drops.push(std::mem::take(&mut episode));
            }
        }
        if !episode.is_empty() {
            drops.push(episode);
        }
    }
    drops.sort_by_key(|d| std::cmp::Reverse(d.len()));
    drops.dedup();
    drops
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| {
            rest.iter()
                .enumerate()
                .filter(|(i, _)| !d.contains(i))
                .map(|(_, o)| o)
                .chain(std::iter::once(last))
                .cloned()
                .collect()
        })
        .collect()
}

/// `ops` without each run of `width` operations before the last, from the
/// end backwards.
fn without_runs(ops: &[Op], width: usize) -> Vec<Vec<Op>> {
    let n = ops.len().saturating_sub(1);
    if width == 0 || width > n {
        return vec![];
    }
    let mut out = Vec::new();
    let mut end = n;
    while end >= width {
        out.push(ops[..end - width].iter().chain(&ops[end..]).cloned().collect());
        end -= width;
    }
    if end > 0 {
        out.push(ops[end..].to_vec());
    }
    out
}

/// Functions, states and flags in all: what patch simplification lowers.
fn size(u: &Universe) -> usize {
    u.patches.iter().map(|p| p.funcs.len() + p.states.len() + p.replace as usize).sum()
}

/// Every one-step simplification of `u`'s patches: one function fewer (a
/// patch keeps at least one), no states, no `replace`.
fn simplifications(u: &Universe) -> Vec<Universe> {
    let mut out = Vec::new();
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
        for v in variants {
            let mut w = u.clone();
            w.patches[pi] = v;
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::rng::Rng;
    use crate::model::{Features, FuncKey};

    fn batch(f: impl Fn(&Universe, &[Planned]) -> bool) -> impl FnMut(&[Candidate]) -> Vec<bool> {
        move |c| c.iter().map(|(u, p)| f(u, p)).collect()
    }

    /// A load and its disable go together: dropping either alone changes
    /// what later operations mean, dropping both does not.
    #[test]
    fn drops_a_patch_s_operations_together() {
        let u = universe();
        let (a, b) = (u.patches[0].name.clone(), u.patches[1].name.clone());
        let ops = vec![
            Op::Load(a.clone()),
            Op::Disable(a.clone()),
            Op::Load(b.clone()),
            Op::Disable(b.clone()),
            Op::Load(a.clone()),
        ];
        let last_is_a = |_: &Universe, p: &[Planned]| p.last().is_some_and(|l| l.op == Op::Load(a.clone()));
        let (_, small) = shrink(&u, &ops, 10, 1, batch(last_is_a));
        assert_eq!(small, [Op::Load(a.clone())]);
        assert_eq!(without_runs(&[Op::Release, Op::Release, Op::Release, Op::Load(a)], 2).len(), 2);
    }

    /// A patch loaded and unloaded before it is loaded again: that first
    /// episode goes as a whole, though other operations come between.
    #[test]
    fn drops_an_earlier_episode_of_a_patch() {
        let u = universe();
        let (a, b) = (u.patches[0].name.clone(), u.patches[1].name.clone());
        let t = "klpx_t1".to_string();
        let ops = vec![
            Op::Load(a.clone()),
            Op::LoadTarget(t.clone()),
            Op::Disable(a.clone()),
            Op::Unload(a.clone()),
            Op::Load(a.clone()),
            Op::Load(b.clone()),
        ];
        // Fails when a and the target are loaded before b.
        let needs = |_: &Universe, p: &[Planned]| {
            let before_b = &p[..p.len() - 1];
            before_b.iter().any(|x| x.op == Op::LoadTarget(t.clone()))
                && before_b.last().is_some_and(|x| x.after.patches.contains_key(&a))
        };
        let cands = without_groups(&ops);
        assert!(
            cands.contains(&vec![Op::LoadTarget(t.clone()), Op::Load(a.clone()), Op::Load(b.clone())]),
            "{cands:?}"
        );
        let (_, small) = shrink(&u, &ops, 30, 1, batch(needs));
        assert_eq!(small.len(), 3, "{small:?}");
    }

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
        let (small, ops) = shrink(&u, &ops, 80, 2, batch(needs));
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
        let (small, ops2) = shrink(&u, &ops, 20, 1, batch(needs));
        assert_eq!(ops2, ops);
        assert_eq!(small.patches[0].funcs, [key]);
    }

    #[test]
    fn stays_within_its_budget() {
        let u = universe();
        let ops: Vec<Op> = u.patches.iter().map(|p| Op::Load(p.name.clone())).collect();
        let mut runs = 0;
        let _ = shrink(&u, &ops, 3, 2, |c| {
            runs += c.len();
            vec![true; c.len()]
        });
        assert_eq!(runs, 3);
    }
}
