//! Model checking: a sequence of operations gives the same observable results on a backend
//! as on raft's `MemStorage` (the log) plus a `BTreeMap` (the applied state).

use std::collections::BTreeMap;

use raft::Storage;
use raft::eraftpb::Entry;
use raft::storage::MemStorage;

use super::{BackendBuilder, build, ctx, dump_kv, hard_state, new_entry, open, snapshot_with};
use crate::kv::KvCommand;
use crate::storage::StorageBackend;
use crate::storage::snapshot_data::SnapshotData;

/// One step of a model-checked sequence. Indexes are relative so that most random
/// sequences are valid; invalid ones must fail identically on the model and the backend.
#[derive(Debug, Clone)]
pub enum Op {
    /// Append `n` entries starting `back` positions before `last_index + 1` (0 = at the end,
    /// never below the commit index), with the current term, bumped first if `bump`.
    Append { back: u64, n: u64, bump: bool },
    /// Append leaving a gap of `skip` (≥ 1) after the last index: must be refused.
    AppendGap { skip: u64 },
    /// Persist a hard state with commit moved to `last_index - back` (clamped).
    HardState { back: u64, vote: u64 },
    /// Apply up to `n` more entries (puts of `key % 16`, every third a delete).
    Apply { n: u64 },
    /// Compact to `applied - back`, but never the whole log (raft's `MemStorage` loses track
    /// of its first index then; compacting everything is covered by [`super::compact_table`]).
    Compact { back: u64 },
    /// `create_snapshot` and compare its data with the model.
    CreateSnapshot,
    /// Install a snapshot `ahead` entries past the last index with `pairs` keys.
    Install { ahead: u64, pairs: u8 },
    /// Close and reopen the backend.
    Reopen,
}

/// Replay `ops` against a fresh backend and against raft's `MemStorage` + a `BTreeMap`,
/// comparing everything observable after each step.
pub fn check_against_model<Bl: BackendBuilder>(builder: &Bl, ops: &[Op]) {
    let (t, mut b) = build(builder);
    let model = MemStorage::new();
    let mut kv: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut applied = 0u64;
    // Every apply, to re-make those a reopen loses (see `catch_up`).
    let mut journal: Vec<super::Applied> = Vec::new();
    let mut term = 1u64;
    // Term of every index ever appended (MemStorage forgets terms below its first index).
    let mut terms: BTreeMap<u64, u64> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        let first = model.first_index().unwrap();
        let last = model.last_index().unwrap();
        let label = format!("{}: step {step} {op:?}", builder.name());
        match *op {
            Op::Append { back, n, bump } => {
                if bump {
                    term += 1;
                }
                // Raft never rewrites committed (let alone applied) entries.
                let commit = model.initial_state().unwrap().hard_state.commit;
                let start = (last + 1)
                    .saturating_sub(back)
                    .max(commit + 1)
                    .max(applied + 1);
                let ents: Vec<Entry> = (start..start + n.max(1))
                    .map(|i| new_entry(i, term))
                    .collect();
                assert!(start >= first, "{label}: generator broke its invariant");
                b.persist(None, &ents, None)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                model.wl().append(&ents).unwrap();
                terms.split_off(&start);
                terms.extend(ents.iter().map(|e| (e.index, e.term)));
            }
            Op::AppendGap { skip } => {
                let ents = vec![new_entry(last + 1 + skip.max(1), term)];
                assert!(
                    b.persist(None, &ents, None).is_err(),
                    "{label}: gap accepted"
                );
            }
            Op::HardState { back, vote } => {
                let prev = model.initial_state().unwrap().hard_state.commit;
                let commit = last.saturating_sub(back).max(prev).max(applied);
                let hs = hard_state(term, vote, commit);
                b.persist(None, &[], Some(&hs)).unwrap();
                model.wl().set_hardstate(hs);
            }
            Op::Apply { n } => {
                // Only committed entries are applied.
                let commit = model.initial_state().unwrap().hard_state.commit;
                let to = (applied + n).min(commit).min(last);
                if to > applied {
                    let ents = model.entries(applied + 1, to + 1, None, ctx()).unwrap();
                    let cmds: Vec<KvCommand> = ents
                        .iter()
                        .map(|e| {
                            let key = format!("key{}", e.index % 16).into_bytes();
                            if e.index % 3 == 0 {
                                KvCommand::Delete { key }
                            } else {
                                KvCommand::Put {
                                    key,
                                    value: e.data.to_vec(),
                                }
                            }
                        })
                        .collect();
                    b.apply(to, &cmds, None)
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    journal.push((to, cmds.clone(), None));
                    for c in cmds {
                        match c {
                            KvCommand::Put { key, value } => kv.insert(key, value),
                            KvCommand::Delete { key } => kv.remove(&key),
                        };
                    }
                    applied = to;
                }
            }
            Op::Compact { back } => {
                let up_to = applied.saturating_sub(back).min(last.saturating_sub(1));
                b.compact(up_to).unwrap_or_else(|e| panic!("{label}: {e}"));
                model.wl().compact(up_to + 1).unwrap();
            }
            Op::CreateSnapshot => {
                if applied == 0 {
                    assert!(b.create_snapshot().is_err());
                    continue;
                }
                let s = b
                    .create_snapshot()
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(s.get_metadata().index, applied, "{label}");
                assert_eq!(Some(&s.get_metadata().term), terms.get(&applied), "{label}");
                let d = SnapshotData::parse(&s.data).unwrap();
                let got: Vec<_> = d.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                let want: Vec<_> = kv.clone().into_iter().collect();
                assert_eq!(got, want, "{label}: snapshot data");
            }
            Op::Install { ahead, pairs } => {
                let index = last + ahead.max(1);
                term += 1;
                let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..pairs)
                    .map(|i| {
                        (
                            format!("key{i}").into_bytes(),
                            format!("snap{index}").into_bytes(),
                        )
                    })
                    .collect();
                let refs: Vec<(&[u8], &[u8])> =
                    pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
                let snap = snapshot_with(index, term, &refs);
                let mut hs = model.initial_state().unwrap().hard_state;
                hs.term = hs.term.max(term);
                hs.commit = index;
                b.persist(Some(&snap), &[], Some(&hs))
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                model.wl().apply_snapshot(snap).unwrap();
                terms.clear();
                terms.insert(index, term);
                kv = pairs.into_iter().collect();
                applied = index;
            }
            Op::Reopen => {
                drop(b);
                b = open(builder, t.path());
                super::catch_up(builder, &mut b, applied, &journal);
            }
        }
        compare_with_model(&b, &model, &kv, applied, &label);
    }
}

fn compare_with_model(
    b: &impl StorageBackend,
    model: &MemStorage,
    kv: &BTreeMap<Vec<u8>, Vec<u8>>,
    applied: u64,
    label: &str,
) {
    let first = model.first_index().unwrap();
    let last = model.last_index().unwrap();
    assert_eq!(b.first_index().unwrap(), first, "{label}: first_index");
    assert_eq!(b.last_index().unwrap(), last, "{label}: last_index");
    if last >= first {
        assert_eq!(
            b.entries(first, last + 1, None, ctx()).unwrap(),
            model.entries(first, last + 1, None, ctx()).unwrap(),
            "{label}: entries"
        );
    }
    for i in first..=last {
        assert_eq!(
            b.term(i).unwrap(),
            model.term(i).unwrap(),
            "{label}: term({i})"
        );
    }
    if let Ok(t) = model.term(first - 1) {
        assert_eq!(b.term(first - 1).unwrap(), t, "{label}: term(first - 1)");
    }
    let ms = model.initial_state().unwrap();
    let bs = b.initial_state().unwrap();
    assert_eq!(
        bs.hard_state.term, ms.hard_state.term,
        "{label}: hard state term"
    );
    assert_eq!(
        bs.hard_state.vote, ms.hard_state.vote,
        "{label}: hard state vote"
    );
    assert_eq!(
        bs.hard_state.commit, ms.hard_state.commit,
        "{label}: hard state commit"
    );
    assert_eq!(b.applied_index(), applied, "{label}: applied index");
    let got = dump_kv(b);
    let want: Vec<_> = kv.clone().into_iter().collect();
    assert_eq!(got, want, "{label}: kv state");
}
