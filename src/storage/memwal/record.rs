//! Payloads of memwal's WAL records and their binary encoding.
//!
//! Entries and hard states use a fixed little-endian layout (they are on the hot path of
//! every write and of replay); the rarely written conf state and snapshot metadata use their
//! protobuf encoding. Decoding never panics: a short or malformed payload is an error that
//! the WAL reader turns into a "corrupt record at file:offset" message.

use bytes::Buf;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, SnapshotMetadata};

use crate::kv::KvCommand;

/// Kinds of WAL record. The numeric values are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// First record of every segment: the replica's state when the segment was opened.
    State = 1,
    /// One `persist`: optional snapshot marker, entries, optional hard state.
    Persist = 2,
    /// One `apply` as written before the first index was recorded: KV commands, optional
    /// conf state, new applied index. Still read; no longer written.
    Apply = 3,
    /// Log compaction: new truncation point.
    Compact = 4,
    /// A directly set conf state (bootstrap).
    ConfState = 5,
    /// One `apply` of the entries `first..=index`: as `Apply`, plus its first index, so
    /// that replay can see when an earlier apply is missing and stop there (an `Apply`
    /// that only says where it ends would be applied on top of the hole).
    ApplyRange = 6,
}

impl RecordType {
    pub fn from_u8(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::State,
            2 => RecordType::Persist,
            3 => RecordType::Apply,
            4 => RecordType::Compact,
            5 => RecordType::ConfState,
            6 => RecordType::ApplyRange,
            _ => return None,
        })
    }
}

/// The state written at the start of every segment, so that older segments can be deleted
/// without losing the hard state, conf state or truncation point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateRecord {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub applied_index: u64,
    pub truncated_index: u64,
    pub truncated_term: u64,
    /// Index of the newest local snapshot file when the segment was opened.
    pub snapshot_index: u64,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    State(StateRecord),
    Persist {
        snapshot: Option<SnapshotMetadata>,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
    },
    Apply {
        /// The first index the commands come from (`None` in the older `Apply` records).
        first: Option<u64>,
        index: u64,
        commands: Vec<KvCommand>,
        conf_state: Option<ConfState>,
    },
    Compact {
        index: u64,
        term: u64,
    },
    /// A conf state set directly, stamped with the applied index it was set at (replay
    /// must not let it override a newer snapshot's conf state).
    ConfState {
        applied_index: u64,
        conf_state: ConfState,
    },
}

/// Appends fields to a buffer.
pub struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    pub fn msg(&mut self, m: &impl protobuf::Message) {
        let b = m
            .write_to_bytes()
            .expect("raft protobuf messages always encode");
        self.bytes(&b);
    }
    pub fn hard_state(&mut self, hs: &HardState) {
        self.u64(hs.term);
        self.u64(hs.vote);
        self.u64(hs.commit);
    }
    pub fn entry(&mut self, e: &Entry) {
        self.u64(e.index);
        self.u64(e.term);
        self.u8(e.get_entry_type() as u8);
        self.bytes(&e.data);
        self.bytes(&e.context);
    }
}

/// Reads fields from a payload; every read is bounds-checked.
pub struct Dec<'a> {
    buf: &'a [u8],
}

type DecResult<T> = Result<T, String>;

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf }
    }
    /// Refuse to read `n` bytes of `what` past the end of the payload.
    fn need(&self, n: usize, what: &str) -> DecResult<()> {
        if self.buf.remaining() < n {
            return Err(format!(
                "payload ends inside {what} (need {n} bytes, {} left)",
                self.buf.remaining()
            ));
        }
        Ok(())
    }
    fn take(&mut self, n: usize, what: &str) -> DecResult<&'a [u8]> {
        self.need(n, what)?;
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self, what: &str) -> DecResult<u8> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }
    pub fn u32(&mut self, what: &str) -> DecResult<u32> {
        self.need(4, what)?;
        Ok(self.buf.get_u32_le())
    }
    pub fn u64(&mut self, what: &str) -> DecResult<u64> {
        self.need(8, what)?;
        Ok(self.buf.get_u64_le())
    }
    pub fn bytes(&mut self, what: &str) -> DecResult<&'a [u8]> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    pub fn msg<M: protobuf::Message>(&mut self, what: &str) -> DecResult<M> {
        let b = self.bytes(what)?;
        M::parse_from_bytes(b).map_err(|e| format!("{what}: {e}"))
    }
    pub fn hard_state(&mut self) -> DecResult<HardState> {
        let mut hs = HardState::default();
        hs.term = self.u64("hard state")?;
        hs.vote = self.u64("hard state")?;
        hs.commit = self.u64("hard state")?;
        Ok(hs)
    }
    pub fn entry(&mut self) -> DecResult<Entry> {
        let mut e = Entry::default();
        e.index = self.u64("entry index")?;
        e.term = self.u64("entry term")?;
        let t = self.u8("entry type")?;
        e.set_entry_type(match t {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            other => return Err(format!("unknown entry type {other}")),
        });
        e.data = bytes::Bytes::copy_from_slice(self.bytes("entry data")?);
        e.context = bytes::Bytes::copy_from_slice(self.bytes("entry context")?);
        Ok(e)
    }
    pub fn finish(self) -> DecResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!("{} unexpected trailing bytes", self.buf.len()))
        }
    }
}

const FLAG_SNAPSHOT: u8 = 1;
const FLAG_HARD_STATE: u8 = 2;

/// Encode a `persist` payload.
pub fn encode_persist(
    out: &mut Vec<u8>,
    snapshot: Option<&SnapshotMetadata>,
    entries: &[Entry],
    hs: Option<&HardState>,
) {
    let mut e = Enc(out);
    let flags = if snapshot.is_some() { FLAG_SNAPSHOT } else { 0 }
        | if hs.is_some() { FLAG_HARD_STATE } else { 0 };
    e.u8(flags);
    if let Some(m) = snapshot {
        e.msg(m);
    }
    e.u32(entries.len() as u32);
    for ent in entries {
        e.entry(ent);
    }
    if let Some(hs) = hs {
        e.hard_state(hs);
    }
}

/// Encode an `ApplyRange` payload: the effects of entries `first..=index`.
pub fn encode_apply(
    out: &mut Vec<u8>,
    first: u64,
    index: u64,
    commands: &[KvCommand],
    cs: Option<&ConfState>,
) {
    let mut e = Enc(out);
    e.u64(first);
    e.u64(index);
    match cs {
        Some(cs) => {
            e.u8(1);
            e.msg(cs);
        }
        None => e.u8(0),
    }
    e.u32(commands.len() as u32);
    for c in commands {
        let start = e.0.len();
        e.u32(0);
        c.encode_into(e.0);
        let len = (e.0.len() - start - 4) as u32;
        e.0[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Encode a `state` payload.
pub fn encode_state(out: &mut Vec<u8>, s: &StateRecord) {
    let mut e = Enc(out);
    e.hard_state(&s.hard_state);
    e.msg(&s.conf_state);
    e.u64(s.applied_index);
    e.u64(s.truncated_index);
    e.u64(s.truncated_term);
    e.u64(s.snapshot_index);
}

/// Encode a `compact` payload.
pub fn encode_compact(out: &mut Vec<u8>, index: u64, term: u64) {
    let mut e = Enc(out);
    e.u64(index);
    e.u64(term);
}

/// Encode a `conf state` payload.
pub fn encode_conf_state(out: &mut Vec<u8>, applied_index: u64, cs: &ConfState) {
    let mut e = Enc(out);
    e.u64(applied_index);
    e.msg(cs);
}

/// The truncation point a record sets, if any, decoding no more than needed: a `State`
/// record's truncation point, a `Compact` record's, or the index of a snapshot installed by
/// a `Persist` record.
pub fn truncation_point(t: RecordType, payload: &[u8]) -> DecResult<Option<(u64, u64)>> {
    let mut d = Dec::new(payload);
    Ok(match t {
        RecordType::State => {
            d.hard_state()?;
            d.bytes("conf state")?;
            d.u64("applied index")?;
            Some((d.u64("truncated index")?, d.u64("truncated term")?))
        }
        RecordType::Compact => Some((d.u64("compact index")?, d.u64("compact term")?)),
        RecordType::Persist if d.u8("flags")? & FLAG_SNAPSHOT != 0 => {
            let m: SnapshotMetadata = d.msg("snapshot metadata")?;
            Some((m.index, m.term))
        }
        _ => None,
    })
}

/// Decode a payload of type `t`.
pub fn decode(t: RecordType, payload: &[u8]) -> DecResult<Record> {
    let mut d = Dec::new(payload);
    let rec = match t {
        RecordType::State => Record::State(StateRecord {
            hard_state: d.hard_state()?,
            conf_state: d.msg("conf state")?,
            applied_index: d.u64("applied index")?,
            truncated_index: d.u64("truncated index")?,
            truncated_term: d.u64("truncated term")?,
            snapshot_index: d.u64("snapshot index")?,
        }),
        RecordType::Persist => {
            let flags = d.u8("flags")?;
            if flags & !(FLAG_SNAPSHOT | FLAG_HARD_STATE) != 0 {
                return Err(format!("unknown persist flags {flags:#x}"));
            }
            let snapshot = if flags & FLAG_SNAPSHOT != 0 {
                Some(d.msg("snapshot metadata")?)
            } else {
                None
            };
            let n = d.u32("entry count")? as usize;
            let mut entries = Vec::with_capacity(n.min(payload.len() / 25));
            for _ in 0..n {
                entries.push(d.entry()?);
            }
            let hard_state = if flags & FLAG_HARD_STATE != 0 {
                Some(d.hard_state()?)
            } else {
                None
            };
            Record::Persist {
                snapshot,
                entries,
                hard_state,
            }
        }
        RecordType::Apply | RecordType::ApplyRange => {
            let first = match t {
                RecordType::ApplyRange => Some(d.u64("first index")?),
                _ => None,
            };
            let index = d.u64("applied index")?;
            if first.is_some_and(|f| f == 0 || f > index) {
                return Err(format!(
                    "first index {} is not in 1..={index}",
                    first.unwrap_or(0)
                ));
            }
            let conf_state = match d.u8("conf state flag")? {
                0 => None,
                1 => Some(d.msg("conf state")?),
                other => return Err(format!("bad conf state flag {other}")),
            };
            let n = d.u32("command count")? as usize;
            let mut commands = Vec::with_capacity(n.min(payload.len() / 9));
            for _ in 0..n {
                let b = d.bytes("command")?;
                commands.push(KvCommand::decode(b).map_err(|e| format!("command: {e}"))?);
            }
            Record::Apply {
                first,
                index,
                commands,
                conf_state,
            }
        }
        RecordType::Compact => Record::Compact {
            index: d.u64("compact index")?,
            term: d.u64("compact term")?,
        },
        RecordType::ConfState => Record::ConfState {
            applied_index: d.u64("applied index")?,
            conf_state: d.msg("conf state")?,
        },
    };
    d.finish()?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut ent = Entry::default();
        ent.index = 7;
        ent.term = 3;
        ent.data = bytes::Bytes::from_static(b"payload");
        ent.context = bytes::Bytes::from_static(b"ctx");
        ent.set_entry_type(EntryType::EntryConfChangeV2);
        let mut hs = HardState::default();
        hs.term = 3;
        hs.vote = 2;
        hs.commit = 6;
        let mut meta = SnapshotMetadata::default();
        meta.index = 5;
        meta.term = 2;
        meta.mut_conf_state().voters = vec![1, 2, 3];

        let mut buf = Vec::new();
        encode_persist(&mut buf, Some(&meta), std::slice::from_ref(&ent), Some(&hs));
        let rec = decode(RecordType::Persist, &buf).unwrap();
        assert_eq!(
            rec,
            Record::Persist {
                snapshot: Some(meta.clone()),
                entries: vec![ent.clone()],
                hard_state: Some(hs.clone())
            }
        );

        let cmds = vec![
            KvCommand::Put {
                key: b"a".to_vec(),
                value: b"b".to_vec(),
            },
            KvCommand::Delete { key: b"c".to_vec() },
        ];
        buf.clear();
        encode_apply(&mut buf, 8, 9, &cmds, Some(meta.get_conf_state()));
        assert_eq!(
            decode(RecordType::ApplyRange, &buf).unwrap(),
            Record::Apply {
                first: Some(8),
                index: 9,
                commands: cmds.clone(),
                conf_state: Some(meta.get_conf_state().clone())
            }
        );

        // Truncated payloads are errors, not panics.
        for cut in 0..buf.len() {
            assert!(decode(RecordType::ApplyRange, &buf[..cut]).is_err());
        }
        // The older record, without a first index, still reads.
        assert_eq!(
            decode(RecordType::Apply, &buf[8..]).unwrap(),
            Record::Apply {
                first: None,
                index: 9,
                commands: cmds,
                conf_state: Some(meta.get_conf_state().clone())
            }
        );
        // A first index past the end is corruption.
        let mut bad = buf.clone();
        bad[..8].copy_from_slice(&10u64.to_le_bytes());
        assert!(decode(RecordType::ApplyRange, &bad).is_err());
    }
}
