//! The raft loop: one OS thread owning `RawNode` and the storage backend.
//!
//! Each turn: wait for input (or the next tick), **drain every pending input** (proposals,
//! peer messages, reads), tick if due, then handle one `Ready` — so one persist (one fsync)
//! covers every proposal that arrived meanwhile. That is group commit, and where throughput
//! comes from.
//!
//! Ready handling follows raft-rs ("Processing the Ready State"), with the snapshot, the
//! entries and the hard state persisted as one atomic write:
//! 1. send the leader's messages at once (they may go out before the local fsync);
//! 2. persist snapshot + entries + hard state (one `StorageBackend::persist`);
//! 3. apply committed entries (one atomic `apply` for the batch), answer their proposals;
//! 4. send the persisted messages (votes, append responses) — only now is it safe;
//! 5. `advance`; persist the light ready's commit index; send its messages; apply its
//!    committed entries; `advance_apply`.
//!
//! Proposals are tracked by the (index, term) raft gives them: by log matching, the entry
//! applied at that index with that term is ours; any other entry there means ours was
//! dropped. A snapshot replacing the log past a pending index leaves its fate unknown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType};
use raft::{RawNode, ReadOnlyOption, SnapshotStatus, StateRole, Storage};
use slog::Drain;
use tracing::{debug, error, info, warn};

use super::metrics::RaftMetrics;
use super::status::{RaftStatus, StatusCell};
use super::{
    Input, MemberAddrs, Members, NodeConfig, NodeError, NodeStartError, Reply, SnapshotReport,
    member_key, removed_key,
};
use crate::kv::KvCommand;
use crate::storage::snapshot_data::SnapshotDataWriter;
use crate::storage::{AnyBackend, BuiltSnapshot, Finished, StorageBackend, StorageError};
use crate::transport::Transport;
use crate::wire::SnapshotBuilding;

/// Inputs handled per turn at most, so a flood cannot starve ticks and readies.
const MAX_DRAIN: usize = 8192;

/// Bootstrap a brand-new member of a new cluster: every initial member installs the same
/// snapshot at (1, 1) holding the initial voters and their addresses (so the address book
/// is replicated state from the start). Nodes started with `--join` stay empty until the
/// leader sends them a snapshot.
pub fn bootstrap_if_new(
    cfg: &NodeConfig,
    backend: &mut AnyBackend,
    members: &Members,
) -> Result<(), NodeStartError> {
    let state = backend.initial_state()?;
    let fresh = state.conf_state == ConfState::default() && backend.last_index()? == 0;
    for (id, addrs) in &cfg.peers {
        if members.get(*id).is_none() {
            members.learn(*id, addrs.clone());
        }
    }
    if !fresh || cfg.join {
        return Ok(());
    }
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = cfg
        .peers
        .iter()
        .map(|(id, a)| (member_key(*id), serde_json::to_vec(a).expect("serialises")))
        .collect();
    pairs.sort();
    let mut w = SnapshotDataWriter::new(1);
    for (k, v) in &pairs {
        w.push(k, v);
    }
    let mut cs = ConfState::default();
    cs.voters = cfg.peers.iter().map(|p| p.0).collect();
    let snap = crate::storage::make_snapshot(1, 1, &cs, w.finish());
    let mut hs = raft::eraftpb::HardState::default();
    hs.term = 1;
    hs.commit = 1;
    backend.persist(Some(&snap), &[], Some(&hs))?;
    info!(voters = ?cs.voters, "bootstrapped a new cluster member");
    Ok(())
}

/// raft-rs logs through slog; forward it to `log`, which tracing-subscriber picks up.
fn raft_logger(id: u64) -> slog::Logger {
    slog::Logger::root(slog_stdlog::StdLog.fuse(), slog::o!("raft_id" => id))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProposalKind {
    Command,
    ConfChange,
}

struct Pending {
    term: u64,
    kind: ProposalKind,
    reply: Reply<()>,
}

/// The raft thread's state. See the module docs.
pub struct RaftLoop {
    id: u64,
    raw: RawNode<AnyBackend>,
    rx: Receiver<Input>,
    /// Where snapshot builds report back (the loop's own inbox).
    inbox: Sender<Input>,
    transport: Arc<Transport>,
    members: Members,
    status: StatusCell,
    tick: Duration,
    snapshot_interval: u64,
    compact_lag: u64,
    pending: BTreeMap<u64, Pending>,
    read_seq: u64,
    read_nonce: u64,
    reads_requested: HashMap<Vec<u8>, Reply<u64>>,
    reads_waiting: Vec<(u64, Reply<u64>)>,
    snapshot_index: u64,
    last_stats: Instant,
    readies: u64,
    synced_persists: u64,
    /// Microseconds in the persists of `synced_persists` alone.
    synced_persist_us: u64,
    entries_appended: u64,
    turns: u64,
    busy_us: u64,
    persist_us: u64,
    apply_us: u64,
    longest_turn_us: u64,
    /// Longest turn of the current one-second window, of the previous one, and when the
    /// current one began (see `RaftStatus::recent_longest_turn_us`).
    window_longest_us: u64,
    previous_window_longest_us: u64,
    window_start: Instant,
    /// Where the current turn's time went, for the warning about a slow turn.
    turn: TurnCost,
    last_slow_warning: Option<Instant>,
    /// The snapshot being built off this thread, if any (one at a time).
    building: Option<Building>,
    /// `POST /admin/snapshot` calls that arrived during a build: answered by the next one.
    snapshot_requests: Vec<Reply<SnapshotReport>>,
    /// No automatic build before this (set after a failed one).
    snapshot_retry_at: Instant,
    snapshots_built: u64,
    snapshot_failures: u64,
    last_snapshot_ms: f64,
    /// What `/metrics` reports of the loop's work.
    metrics: RaftMetrics,
    /// The leader as of the previous turn (leader changes are counted on the way).
    last_leader: u64,
}

/// A snapshot build in progress on its own thread.
struct Building {
    /// The build's thread: joined when the loop stops, so that nothing the build holds
    /// (RocksDB's handle and lock) outlives the node.
    thread: std::thread::JoinHandle<()>,
    /// Stops the build early when the loop stops.
    cancel: crate::storage::snapshots::Cancel,
    from_index: u64,
    started: Instant,
    /// Admin calls to answer when it is done.
    replies: Vec<Reply<SnapshotReport>>,
}

/// Where one raft-loop turn's time went (µs), logged when the turn is slow.
#[derive(Default)]
struct TurnCost {
    persist_us: u64,
    apply_us: u64,
    /// Beginning a snapshot (its view), then adopting one and compacting behind it.
    snapshot_us: u64,
    compact_us: u64,
}

/// A turn at least this long is logged with where its time went.
const SLOW_TURN_US: u64 = 50_000;

/// How long to wait before building again after a build failed.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);

/// Every node a conf state names (voters and learners, incoming and outgoing): those whose
/// peer connections the transport admits.
fn conf_members(cs: &ConfState) -> impl Iterator<Item = u64> + '_ {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next)
        .copied()
}

impl RaftLoop {
    /// Build the loop around an opened (and, if new, bootstrapped) backend.
    pub fn new(
        cfg: &NodeConfig,
        backend: AnyBackend,
        rx: Receiver<Input>,
        inbox: Sender<Input>,
        transport: Arc<Transport>,
        members: Members,
        metrics: RaftMetrics,
    ) -> Result<Self, NodeStartError> {
        let stats = backend.stats();
        let raft_cfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.raft.election_ticks,
            heartbeat_tick: 1,
            applied: backend.applied_index(),
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // Bounds one Ready's committed entries, so one apply (one WAL record) stays far
            // below a record's 4 GiB limit (durability-findings F6).
            max_committed_size_per_ready: 64 << 20,
            // Bounds the entries one Ready persists (they are uncommitted), so one persist
            // record stays below 4 GiB too; proposals past it are dropped (503, retried).
            max_uncommitted_size: 1 << 30,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let conf = backend.initial_state()?.conf_state;
        members.set_conf(conf_members(&conf));
        let peers: Vec<u64> = conf_members(&conf).collect();
        let raw = RawNode::new(&raft_cfg, backend, &raft_logger(cfg.id))?;
        for id in peers {
            if id != cfg.id
                && let Some(a) = members.get(id)
            {
                transport.set_peer(id, &a.peer_addr);
            }
        }
        let mut me = RaftLoop {
            id: cfg.id,
            raw,
            rx,
            inbox,
            transport,
            members,
            status: StatusCell::new(placeholder_status(), stats.clone()),
            tick: Duration::from_millis(cfg.raft.tick_ms),
            snapshot_interval: cfg.raft.snapshot_interval,
            compact_lag: cfg.raft.compact_lag,
            pending: BTreeMap::new(),
            read_seq: 0,
            read_nonce: rand::random(),
            reads_requested: HashMap::new(),
            reads_waiting: Vec::new(),
            snapshot_index: stats.snapshot_index,
            last_stats: Instant::now(),
            readies: 0,
            synced_persists: 0,
            synced_persist_us: 0,
            entries_appended: 0,
            turns: 0,
            busy_us: 0,
            persist_us: 0,
            apply_us: 0,
            longest_turn_us: 0,
            window_longest_us: 0,
            previous_window_longest_us: 0,
            window_start: Instant::now(),
            turn: TurnCost::default(),
            last_slow_warning: None,
            building: None,
            snapshot_requests: Vec::new(),
            snapshot_retry_at: Instant::now(),
            snapshots_built: 0,
            snapshot_failures: 0,
            last_snapshot_ms: 0.0,
            metrics,
            last_leader: 0,
        };
        me.publish_status();
        Ok(me)
    }

    /// The status cell this loop publishes to.
    pub fn status_cell(&self) -> StatusCell {
        self.status.clone()
    }

    /// Run until [`Input::Shutdown`] or a fatal error.
    pub fn run(mut self) -> Result<(), NodeStartError> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            // A Ready capped by `max_committed_size_per_ready` leaves more to do at once.
            let wait = match self.raw.has_ready() {
                true => Duration::ZERO,
                false => next_tick.saturating_duration_since(Instant::now()),
            };
            let received = self.rx.recv_timeout(wait);
            let busy = Instant::now();
            let mut more = match received {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut drained = 0;
            while let Some(input) = more.take() {
                match self.handle(input) {
                    Ok(true) => {}
                    Ok(false) => return self.stop(),
                    Err(e) => return self.fatal(e),
                }
                drained += 1;
                if drained < MAX_DRAIN {
                    more = self.rx.try_recv().ok();
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = (next_tick + self.tick).max(now);
                self.reads_requested.retain(|_, r| !r.is_closed());
            }
            if let Err(e) = self.on_ready() {
                return self.fatal(e);
            }
            let took = busy.elapsed().as_micros() as u64;
            let t = std::mem::take(&mut self.turn);
            // At most one warning a second (a slow disk would make every turn slow).
            if took >= SLOW_TURN_US
                && self
                    .last_slow_warning
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                self.last_slow_warning = Some(Instant::now());
                warn!(
                    id = self.id,
                    turn_ms = took / 1000,
                    inputs = drained,
                    persist_ms = t.persist_us / 1000,
                    apply_ms = t.apply_us / 1000,
                    snapshot_ms = t.snapshot_us / 1000,
                    compact_ms = t.compact_us / 1000,
                    "slow raft-loop turn (no write is acknowledged through it)"
                );
            }
            self.turns += 1;
            self.busy_us += took;
            self.persist_us += t.persist_us;
            self.apply_us += t.apply_us;
            self.longest_turn_us = self.longest_turn_us.max(took);
            if self.window_start.elapsed() >= Duration::from_secs(1) {
                self.previous_window_longest_us = self.window_longest_us;
                self.window_longest_us = 0;
                self.window_start = Instant::now();
            }
            self.window_longest_us = self.window_longest_us.max(took);
            let leader = self.raw.raft.leader_id;
            if leader != self.last_leader {
                // A change to a known leader; losing one (0) is not a change yet.
                if leader != 0 {
                    self.metrics.leader_changes.inc();
                }
                self.last_leader = leader;
            }
            self.publish_status();
        }
        self.stop()
    }

    fn fatal(mut self, e: StorageError) -> Result<(), NodeStartError> {
        error!("fatal storage error, stopping the node: {e}");
        self.fail_all();
        Err(e.into())
    }

    fn stop(mut self) -> Result<(), NodeStartError> {
        self.fail_all();
        info!(id = self.id, "raft loop stopped");
        Ok(())
    }

    fn fail_all(&mut self) {
        // Accepted proposals may still commit under the next leader: their fate is unknown.
        for (_, p) in std::mem::take(&mut self.pending) {
            let _ = p.reply.send(Err(NodeError::Indeterminate(
                "the node stopped before the write's outcome was known".into(),
            )));
        }
        for (_, r) in self.reads_requested.drain() {
            let _ = r.send(Err(NodeError::ShuttingDown));
        }
        for (_, r) in self.reads_waiting.drain(..) {
            let _ = r.send(Err(NodeError::ShuttingDown));
        }
        let (thread, replies) = match self.building.take() {
            Some(b) => {
                // Its file is not needed any more, and at its write rate it could outlast
                // the stop's grace period.
                b.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                (Some(b.thread), b.replies)
            }
            None => (None, Vec::new()),
        };
        for r in replies.into_iter().chain(self.snapshot_requests.drain(..)) {
            let _ = r.send(Err(NodeError::ShuttingDown));
        }
        if let Some(t) = thread {
            info!(id = self.id, "waiting for the snapshot being built");
            let _ = t.join();
        }
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    fn not_leader(&self) -> NodeError {
        NodeError::NotLeader {
            leader: self.raw.raft.leader_id,
        }
    }

    /// Handle one input; `false` means stop, an error is fatal.
    fn handle(&mut self, input: Input) -> Result<bool, StorageError> {
        match input {
            Input::Raft(msg) => {
                if let Err(e) = self.raw.step(msg) {
                    debug!("step: {e}");
                }
            }
            Input::Propose { cmd, reply } => {
                if !self.is_leader() {
                    let _ = reply.send(Err(self.not_leader()));
                } else {
                    let data = cmd.encode();
                    let r = self.raw.propose(Vec::new(), data);
                    self.track(r, ProposalKind::Command, reply);
                }
            }
            Input::ReadIndex { reply } => {
                // Unique across nodes and restarts: the leader ignores a second pending read
                // with the same context, and must never answer one node's read with another's.
                self.read_seq += 1;
                let mut ctx = Vec::with_capacity(24);
                ctx.extend_from_slice(&self.id.to_be_bytes());
                ctx.extend_from_slice(&self.read_nonce.to_be_bytes());
                ctx.extend_from_slice(&self.read_seq.to_be_bytes());
                self.raw.read_index(ctx.clone());
                self.reads_requested.insert(ctx, reply);
            }
            Input::ConfChange { cc, addrs, reply } => {
                if !self.is_leader() {
                    let _ = reply.send(Err(self.not_leader()));
                } else if let Err(e) = self.check_conf_change(&cc) {
                    let _ = reply.send(Err(e));
                } else {
                    let ctx = addrs
                        .map(|a| serde_json::to_vec(&a).expect("serialises"))
                        .unwrap_or_default();
                    let r = self.raw.propose_conf_change(ctx, cc);
                    self.track(r, ProposalKind::ConfChange, reply);
                }
            }
            Input::Snapshot { reply } => {
                if self.building.is_some() {
                    // The build in progress began earlier: this call gets the next one.
                    self.snapshot_requests.push(reply);
                } else {
                    self.begin_snapshot(vec![reply])?;
                }
            }
            Input::SnapshotBuilt { result } => self.snapshot_built(result)?,
            Input::TransferLeader { to, reply } => {
                if !self.is_leader() {
                    let _ = reply.send(Err(self.not_leader()));
                } else if !self.voters().contains(&to) {
                    let _ = reply.send(Err(NodeError::Rejected(format!(
                        "node {to} is not a voter"
                    ))));
                } else {
                    self.raw.transfer_leader(to);
                    let _ = reply.send(Ok(()));
                }
            }
            Input::Unreachable { id, snapshot } => {
                self.raw.report_unreachable(id);
                if snapshot {
                    self.raw.report_snapshot(id, SnapshotStatus::Failure);
                }
            }
            Input::SnapshotSent { id } => {
                // Back to probing: if the follower lost the snapshot, raft sends another.
                self.raw.report_snapshot(id, SnapshotStatus::Finish);
            }
            Input::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        v.sort_unstable();
        v
    }

    fn check_conf_change(&self, cc: &ConfChange) -> Result<(), NodeError> {
        let voters = self.voters();
        match cc.get_change_type() {
            ConfChangeType::AddNode if voters.contains(&cc.node_id) => Err(NodeError::Rejected(
                format!("node {} is already a member", cc.node_id),
            )),
            ConfChangeType::RemoveNode if !voters.contains(&cc.node_id) => Err(
                NodeError::Rejected(format!("node {} is not a member", cc.node_id)),
            ),
            ConfChangeType::RemoveNode if voters.len() == 1 => {
                Err(NodeError::Rejected("cannot remove the last member".into()))
            }
            // raft-rs 0.7 leaves a removed leader in charge; move leadership first.
            ConfChangeType::RemoveNode if cc.node_id == self.id => Err(NodeError::Rejected(
                "cannot remove the leader; POST /admin/transfer-leader/{id} first".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Remember a proposal raft accepted, under the index and term it got.
    fn track(&mut self, r: raft::Result<()>, kind: ProposalKind, reply: Reply<()>) {
        match r {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                let term = self.raw.raft.term;
                if let Some(old) = self.pending.insert(index, Pending { term, kind, reply }) {
                    // Only possible after a snapshot reset the log: the old entry's fate is unknown.
                    let _ = old.reply.send(Err(NodeError::Indeterminate(
                        "the log was reset past this proposal".into(),
                    )));
                }
            }
            Err(e) => {
                self.metrics.proposals_dropped.inc();
                let _ = reply.send(Err(NodeError::Dropped(e.to_string())));
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), StorageError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let began = Instant::now();
        let mut rd = self.raw.ready();
        self.transport.send(rd.take_messages());
        let snapshot = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
        self.readies += 1;
        let synced = rd.must_sync();
        self.synced_persists += u64::from(synced);
        self.entries_appended += rd.entries().len() as u64;
        let entry_bytes: usize = rd
            .entries()
            .iter()
            .map(|e| e.data.len() + e.context.len())
            .sum();
        let t = Instant::now();
        self.raw
            .mut_store()
            .persist(snapshot.as_ref(), rd.entries(), rd.hs())?;
        let elapsed = t.elapsed();
        let took = elapsed.as_micros() as u64;
        self.turn.persist_us += took;
        if synced {
            self.synced_persist_us += took;
            self.metrics.persist_seconds.observe(elapsed.as_secs_f64());
            if !rd.entries().is_empty() {
                self.metrics
                    .persist_entries
                    .observe(rd.entries().len() as f64);
                self.metrics.persist_bytes.observe(entry_bytes as f64);
            }
        }
        if let Some(s) = &snapshot {
            self.metrics
                .snapshot_install_seconds
                .observe(elapsed.as_secs_f64());
            self.metrics
                .snapshot_install_bytes
                .observe(s.get_data().len() as f64);
            self.on_snapshot_installed(s.get_metadata().index);
        }
        self.apply(rd.take_committed_entries())?;
        self.transport.send(rd.take_persisted_messages());
        for rs in rd.take_read_states() {
            if let Some(reply) = self.reads_requested.remove(&rs.request_ctx) {
                self.reads_waiting.push((rs.index, reply));
            }
        }
        let mut light = self.raw.advance(rd);
        if light.commit_index().is_some() {
            let hs = self.raw.raft.hard_state();
            let t = Instant::now();
            self.raw.mut_store().persist(None, &[], Some(&hs))?;
            self.turn.persist_us += t.elapsed().as_micros() as u64;
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.serve_reads();
        self.metrics
            .ready_seconds
            .observe(began.elapsed().as_secs_f64());
        let t = Instant::now();
        self.maybe_snapshot()?;
        self.turn.snapshot_us += t.elapsed().as_micros() as u64;
        Ok(())
    }

    fn on_snapshot_installed(&mut self, index: u64) {
        info!(id = self.id, index, "installed a snapshot from the leader");
        self.snapshot_index = index;
        let rest = self.pending.split_off(&(index + 1));
        for (_, p) in std::mem::replace(&mut self.pending, rest) {
            let _ = p.reply.send(Err(NodeError::Indeterminate(
                "a snapshot replaced the log past this proposal".into(),
            )));
        }
        // The snapshot brought a new address book and conf state.
        let cs = self.raw.raft.prs().conf().to_conf_state();
        self.members.set_conf(conf_members(&cs));
        self.drop_removed_peers();
        for id in conf_members(&cs) {
            if id != self.id
                && let Some(a) = self.members.get(id)
            {
                self.transport.set_peer(id, &a.peer_addr);
            }
        }
    }

    /// Apply committed entries as one atomic batch, then answer their proposals.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let n = entries.len() as u64;
        let t = Instant::now();
        let r = self.apply_entries(entries);
        let elapsed = t.elapsed();
        self.turn.apply_us += elapsed.as_micros() as u64;
        self.metrics.apply_seconds.observe(elapsed.as_secs_f64());
        self.metrics.applied_entries.inc_by(n);
        r
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let applied = self.raw.store().applied_index();
        let entries: Vec<Entry> = entries.into_iter().filter(|e| e.index > applied).collect();
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let mut cmds = Vec::with_capacity(entries.len());
        let mut conf_state = None;
        let mut answers = Vec::new();
        let mut rejected = Vec::new();
        for e in &entries {
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {}
                // An entry that is not a command is applied as a no-op: every replica
                // decodes the same bytes the same way, so they stay identical, and a node
                // never stops over the content of a committed entry (it would stop again at
                // every restart).
                EntryType::EntryNormal => match KvCommand::decode(&e.data) {
                    Ok(cmd) => cmds.push(cmd),
                    Err(err) => self.not_a_command(e.index, &err.to_string()),
                },
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    match self.apply_conf_change(e, &mut cmds)? {
                        Some(cs) => conf_state = Some(cs),
                        None => rejected.push(e.index),
                    }
                }
            }
            if let Some(p) = self.pending.remove(&e.index) {
                let kind = match e.get_entry_type() {
                    EntryType::EntryNormal if e.data.is_empty() => None,
                    EntryType::EntryNormal => Some(ProposalKind::Command),
                    _ => Some(ProposalKind::ConfChange),
                };
                answers.push((p, e.index, e.term, kind));
            }
        }
        self.raw
            .mut_store()
            .apply(last, &cmds, conf_state.as_ref())?;
        if let Some(cs) = &conf_state {
            self.members.set_conf(conf_members(cs));
            self.drop_removed_peers();
        }
        for (p, index, term, kind) in answers {
            let r = if p.term == term && rejected.contains(&index) {
                Err(NodeError::Rejected(
                    "raft refused the membership change".into(),
                ))
            } else if p.term == term && kind == Some(p.kind) {
                Ok(())
            } else if p.term == term {
                Err(NodeError::Dropped(
                    "raft replaced the membership change (another one was in progress)".into(),
                ))
            } else {
                Err(NodeError::Dropped("log rewritten by a new leader".into()))
            };
            if matches!(r, Err(NodeError::Dropped(_))) {
                self.metrics.proposals_dropped.inc();
            }
            let _ = p.reply.send(r);
        }
        Ok(())
    }

    /// Forget the peers (and close the connections) of members whose removal is applied.
    /// After the tombstone, so that no new connection of theirs is admitted meanwhile.
    fn drop_removed_peers(&self) {
        for id in self.transport.peer_ids() {
            if self.members.is_removed(id) {
                self.transport.remove_peer(id);
            }
        }
    }

    /// Count and log a committed entry that is applied as a no-op.
    fn not_a_command(&mut self, index: u64, why: &str) {
        let total = self
            .status
            .not_commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        warn!(
            index,
            total, "committed entry is not a command, applied as a no-op: {why}"
        );
    }

    /// Apply one conf-change entry to raft; record address-book changes as KV commands
    /// (applied atomically with the new conf state). An entry that does not decode is a
    /// no-op, as a normal entry that is not a command is (`Ok(None)`: the proposal, if it
    /// was ours, is answered as rejected).
    fn apply_conf_change(
        &mut self,
        e: &Entry,
        cmds: &mut Vec<KvCommand>,
    ) -> Result<Option<ConfState>, StorageError> {
        let (result, changes) = if e.get_entry_type() == EntryType::EntryConfChange {
            let cc = match ConfChange::parse_from_bytes(&e.data) {
                Ok(cc) => cc,
                Err(err) => {
                    self.not_a_command(e.index, &format!("not a conf change: {err}"));
                    return Ok(None);
                }
            };
            let changes = vec![(cc.get_change_type(), cc.node_id)];
            (self.raw.apply_conf_change(&cc), changes)
        } else {
            let cc = match ConfChangeV2::parse_from_bytes(&e.data) {
                Ok(cc) => cc,
                Err(err) => {
                    self.not_a_command(e.index, &format!("not a conf change: {err}"));
                    return Ok(None);
                }
            };
            let changes = cc
                .get_changes()
                .iter()
                .map(|c| (c.get_change_type(), c.node_id))
                .collect();
            (self.raw.apply_conf_change(&cc), changes)
        };
        let cs = match result {
            Ok(cs) => cs,
            Err(err) => {
                warn!(index = e.index, "conf change rejected by raft: {err}");
                return Ok(None);
            }
        };
        for (kind, id) in changes {
            match kind {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    // An id may be added again after its removal.
                    cmds.push(KvCommand::Delete {
                        key: removed_key(id),
                    });
                    if let Ok(addrs) = serde_json::from_slice::<MemberAddrs>(&e.context) {
                        cmds.push(KvCommand::Put {
                            key: member_key(id),
                            value: e.context.to_vec(),
                        });
                        if id != self.id {
                            self.transport.set_peer(id, &addrs.peer_addr);
                        }
                        self.members.learn(id, addrs);
                    }
                    info!(id = self.id, node = id, "member added");
                }
                ConfChangeType::RemoveNode => {
                    cmds.push(KvCommand::Delete {
                        key: member_key(id),
                    });
                    // The tombstone that keeps its connections out (see `Members::admits`);
                    // its peer is dropped once the tombstone is applied (`apply`).
                    cmds.push(KvCommand::Put {
                        key: removed_key(id),
                        value: Vec::new(),
                    });
                    if id != self.id {
                        self.members.forget(id);
                    }
                    info!(id = self.id, node = id, "member removed");
                }
            }
        }
        Ok(Some(cs))
    }

    fn serve_reads(&mut self) {
        if self.reads_waiting.is_empty() {
            return;
        }
        let applied = self.raw.store().applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_waiting)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_waiting = waiting;
        for (index, reply) in ready {
            let _ = reply.send(Ok(index));
        }
    }

    /// Begin a snapshot build when one is due (`snapshot_interval` entries applied since
    /// the last) or raft asked for one it could not have (to send to a follower), unless
    /// one is being built.
    fn maybe_snapshot(&mut self) -> Result<(), StorageError> {
        if self.building.is_some() {
            return Ok(());
        }
        // After a failed build, none (due or asked for) before the retry time: a build
        // that fails (a full disk) would otherwise be redone every time raft asks.
        if Instant::now() < self.snapshot_retry_at {
            return Ok(());
        }
        let store = self.raw.store();
        let due = self.snapshot_interval > 0
            && store.applied_index() >= self.snapshot_index + self.snapshot_interval;
        // Polled every turn so the request is not lost (it is a flag).
        let wanted = store.snapshot_wanted();
        if due || wanted {
            self.begin_snapshot(Vec::new())?;
        }
        Ok(())
    }

    /// Begin a snapshot (a cheap, point-in-time view: see `storage::snapshots`) and build it
    /// on its own thread, which reports back with [`Input::SnapshotBuilt`]. `replies` are
    /// answered when it is adopted. Errors of the begin step other than "nothing to
    /// snapshot" are fatal (it syncs the log).
    fn begin_snapshot(&mut self, replies: Vec<Reply<SnapshotReport>>) -> Result<(), StorageError> {
        let job = match self.raw.mut_store().begin_snapshot() {
            Ok(job) => job,
            Err(StorageError::Invalid(why)) => {
                for r in replies {
                    let _ = r.send(Err(NodeError::Rejected(format!("snapshot: {why}"))));
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let from_index = job.applied_at_begin();
        let cancel = job.canceller();
        let inbox = self.inbox.clone();
        let spawned = std::thread::Builder::new()
            .name("snapshot-build".into())
            .spawn(move || {
                crate::storage::snapshots::background_priority();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                    .unwrap_or_else(|panic| {
                        Err(StorageError::Invalid(format!(
                            "the snapshot build panicked: {}",
                            super::panic_message(&panic)
                        )))
                    });
                let _ = inbox.send(Input::SnapshotBuilt { result });
            });
        match spawned {
            Ok(thread) => {
                debug!(id = self.id, from_index, "snapshot build begun");
                self.building = Some(Building {
                    thread,
                    cancel,
                    from_index,
                    started: Instant::now(),
                    replies,
                });
            }
            Err(e) => {
                self.snapshot_failed(&format!("cannot start the snapshot thread: {e}"), replies);
            }
        }
        Ok(())
    }

    /// A build has finished: adopt it, compact the log behind it (keeping `compact_lag`
    /// entries, and never past the snapshot, so a follower sent it can catch up from the
    /// log), answer the admin calls. A failed build is logged and retried later; the
    /// replica keeps its previous snapshot. Errors adopting it are fatal (storage).
    fn snapshot_built(
        &mut self,
        result: crate::storage::Result<BuiltSnapshot>,
    ) -> Result<(), StorageError> {
        let Some(b) = self.building.take() else {
            return Ok(());
        };
        let built = match result {
            Ok(built) => built,
            Err(e) => {
                self.snapshot_failed(&e.to_string(), b.replies);
                self.begin_requested()?;
                return Ok(());
            }
        };
        let (index, term) = (built.index(), built.snapshot.get_metadata().term);
        let bytes = built.snapshot.data.len() as u64;
        let store = self.raw.mut_store();
        let t = Instant::now();
        let finished = store.finish_snapshot(built)?;
        self.turn.snapshot_us += t.elapsed().as_micros() as u64;
        let duration_ms = b.started.elapsed().as_secs_f64() * 1e3;
        if finished == Finished::Adopted {
            let t = Instant::now();
            store.compact(index.saturating_sub(self.compact_lag))?;
            self.turn.compact_us += t.elapsed().as_micros() as u64;
            self.snapshot_index = index;
            self.snapshots_built += 1;
            self.last_snapshot_ms = duration_ms;
            self.metrics
                .snapshot_build_seconds
                .observe(duration_ms / 1e3);
            self.metrics.snapshot_build_bytes.observe(bytes as f64);
            debug!(
                id = self.id,
                index,
                bytes,
                ms = duration_ms,
                "snapshot adopted"
            );
        }
        let reply = if finished == Finished::Superseded {
            debug!(
                id = self.id,
                index, "built snapshot superseded by a newer one"
            );
            Err(NodeError::Rejected(format!(
                "the snapshot at {index} was superseded by a newer one installed from the leader while it was built"
            )))
        } else {
            Ok(SnapshotReport {
                index,
                term,
                bytes,
                duration_ms,
                compacted_to: store.first_index().map_or(0, |f| f - 1),
            })
        };
        for r in b.replies {
            let _ = r.send(reply.clone());
        }
        self.begin_requested()
    }

    /// Begin the build that admin calls asked for during the previous one.
    fn begin_requested(&mut self) -> Result<(), StorageError> {
        if self.snapshot_requests.is_empty() {
            return Ok(());
        }
        let replies = std::mem::take(&mut self.snapshot_requests);
        self.begin_snapshot(replies)
    }

    fn snapshot_failed(&mut self, why: &str, replies: Vec<Reply<SnapshotReport>>) {
        self.snapshot_failures += 1;
        self.metrics.snapshot_build_failures.inc();
        self.snapshot_retry_at = Instant::now() + SNAPSHOT_RETRY;
        warn!(
            id = self.id,
            failures = self.snapshot_failures,
            "snapshot build failed (the previous snapshot stays): {why}"
        );
        for r in replies {
            let _ = r.send(Err(NodeError::Rejected(format!("snapshot failed: {why}"))));
        }
    }

    fn publish_status(&mut self) {
        let store = self.raw.store();
        let voters = self.voters();
        self.status.set_raft(RaftStatus {
            role: self.raw.raft.state.into(),
            leader_id: self.raw.raft.leader_id,
            term: self.raw.raft.term,
            commit_index: self.raw.raft.raft_log.committed,
            applied_index: store.applied_index(),
            first_index: store.first_index().unwrap_or(0),
            last_index: store.last_index().unwrap_or(0),
            snapshot_index: self.snapshot_index,
            member: voters.contains(&self.id),
            voters,
            readies: self.readies,
            synced_persists: self.synced_persists,
            synced_persist_us: self.synced_persist_us,
            entries_appended: self.entries_appended,
            turns: self.turns,
            busy_us: self.busy_us,
            persist_us: self.persist_us,
            apply_us: self.apply_us,
            longest_turn_us: self.longest_turn_us,
            recent_longest_turn_us: self.window_longest_us.max(self.previous_window_longest_us),
            snapshots_built: self.snapshots_built,
            snapshot_failures: self.snapshot_failures,
            last_snapshot_ms: self.last_snapshot_ms,
            snapshot_building: self.building.as_ref().map(|b| SnapshotBuilding {
                from_index: b.from_index,
                elapsed_ms: b.started.elapsed().as_millis() as u64,
            }),
        });
        if self.last_stats.elapsed() >= Duration::from_secs(1) {
            self.status.set_storage(store.stats());
            self.last_stats = Instant::now();
        }
    }
}

fn placeholder_status() -> RaftStatus {
    RaftStatus {
        role: super::status::Role::Follower,
        leader_id: 0,
        term: 0,
        commit_index: 0,
        applied_index: 0,
        first_index: 0,
        last_index: 0,
        snapshot_index: 0,
        voters: Vec::new(),
        member: false,
        readies: 0,
        synced_persists: 0,
        synced_persist_us: 0,
        entries_appended: 0,
        turns: 0,
        busy_us: 0,
        persist_us: 0,
        apply_us: 0,
        longest_turn_us: 0,
        recent_longest_turn_us: 0,
        snapshots_built: 0,
        snapshot_failures: 0,
        last_snapshot_ms: 0.0,
        snapshot_building: None,
    }
}
