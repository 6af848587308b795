//! The log actor: drives synod-wal's sans-IO engine through the node's disk service.
//!
//! At start it lists the data directory, reads every segment and feeds it to recovery; then
//! it reads the recovered log back through the engine's read plans and reports its contents
//! (an observation the simulator checks), and only then accepts appends. Every append is
//! acknowledged to its requester after the fdatasync that covers it. A failed write or
//! sync latches the engine; the actor then fails, and its supervisor restarts it to recover
//! from what is on disk. Corruption in the middle of the log also fails it, with the file
//! and offset: a single node cannot repair it (replication will refetch the range).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use synod_actor::{Actor, Addr, Context, DiskCompletion, DiskReply, DiskRequestId};
use synod_core::Validate;
use synod_core::disk::DiskOp;
use synod_core::limits::DISK_IO_SIZE_MAX;
use synod_wal::{IoTag, ReadPlan, RecordType, Recovery, Wal, WalConfig, WalOutput};

/// Entries read back per plan while verifying the recovered log.
pub const VERIFY_ENTRIES_PER_READ: u64 = 1_024;
/// The most appends waiting for their acknowledgement (the engine's byte limit applies too).
pub const WAITING_APPENDS_MAX: usize = 65_536;

/// What the log tells a requester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalReply {
    /// The entry is durable at `sequence`.
    Durable { token: u64, sequence: u64 },
    /// The append was not taken (recovering, over a limit, or the log has failed).
    Refused { token: u64, reason: String },
}

/// Messages of the log actor; `R` is the requesters' message type.
#[derive(Debug)]
pub enum WalMessage<R> {
    Append {
        token: u64,
        payload: Bytes,
        reply: Addr<R>,
    },
    Disk(DiskCompletion),
    BatchTimer,
}

/// Observation: an append was accepted at `sequence` (not yet durable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalAccepted {
    pub sequence: u64,
    pub payload: Bytes,
}

/// Observation: the whole log as recovery found it, read back through the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalContents {
    pub entries: Vec<(u64, Bytes)>,
}

enum Phase {
    Listing,
    Reading {
        recovery: Box<Recovery>,
        names: VecDeque<String>,
        current: Option<String>,
    },
    Verifying {
        next: u64,
        end: u64,
        plan: ReadPlan,
        replies: Vec<Bytes>,
    },
    Running,
}

/// The log of one node.
pub struct WalActor<R: From<WalReply> + Send + 'static> {
    config: WalConfig,
    phase: Phase,
    wal: Option<Wal>,
    in_flight: BTreeMap<DiskRequestId, IoTag>,
    waiting: BTreeMap<u64, (u64, Addr<R>)>,
    contents: Vec<(u64, Bytes)>,
    timer_deadline: Option<synod_core::Instant>,
}

impl<R: From<WalReply> + Send + 'static> WalActor<R> {
    /// Panics on an invalid config: configs from users are validated where they are read.
    pub fn new(config: WalConfig) -> WalActor<R> {
        if let Err(error) = config.validate() {
            panic!("invalid WAL config: {error}");
        }
        WalActor {
            config,
            phase: Phase::Listing,
            wal: None,
            in_flight: BTreeMap::new(),
            waiting: BTreeMap::new(),
            contents: Vec::new(),
            timer_deadline: None,
        }
    }

    pub fn wal(&self) -> Option<&Wal> {
        self.wal.as_ref()
    }

    fn submit(
        &mut self,
        ctx: &mut Context<'_, WalMessage<R>>,
        op: DiskOp,
    ) -> Option<DiskRequestId> {
        match ctx.disk(op, WalMessage::Disk) {
            Ok(id) => Some(id),
            Err(error) => {
                ctx.fail(format!("log: cannot submit disk IO: {error}"));
                None
            }
        }
    }

    fn on_boot_reply(&mut self, ctx: &mut Context<'_, WalMessage<R>>, reply: DiskReply) {
        let result = match std::mem::replace(&mut self.phase, Phase::Running) {
            Phase::Listing => self.begin_reading(ctx, reply),
            Phase::Reading {
                recovery,
                names,
                current,
            } => self.continue_reading(ctx, recovery, names, current, reply),
            Phase::Verifying {
                next,
                end,
                plan,
                mut replies,
            } => match reply {
                DiskReply::Data(data) => {
                    replies.push(data);
                    self.continue_verifying(ctx, next, end, plan, replies)
                }
                other => Err(format!("unexpected reply {other:?} while verifying")),
            },
            Phase::Running => Err("a boot reply after the log started".to_string()),
        };
        if let Err(reason) = result {
            ctx.fail(format!("log recovery: {reason}"));
        }
    }

    fn begin_reading(
        &mut self,
        ctx: &mut Context<'_, WalMessage<R>>,
        reply: DiskReply,
    ) -> Result<(), String> {
        let DiskReply::Names(names) = reply else {
            return Err(format!("list gave {reply:?}"));
        };
        let segments = Recovery::segment_names(&names).map_err(|e| e.to_string())?;
        let recovery = Recovery::new(self.config.clone()).map_err(|e| e.to_string())?;
        let names = segments.into_iter().collect();
        self.continue_reading(ctx, Box::new(recovery), names, None, DiskReply::Done)
    }

    /// Reads segments one at a time: its length, then its bytes, then the next one.
    fn continue_reading(
        &mut self,
        ctx: &mut Context<'_, WalMessage<R>>,
        mut recovery: Box<Recovery>,
        names: VecDeque<String>,
        current: Option<String>,
        reply: DiskReply,
    ) -> Result<(), String> {
        let next_op = match (current, reply) {
            (Some(name), DiskReply::Len(len)) => {
                if len > DISK_IO_SIZE_MAX as u64 {
                    return Err(format!("{name} is {len} bytes, larger than any segment"));
                }
                let op = DiskOp::Read {
                    path: name.clone(),
                    offset: 0,
                    len: len as u32,
                };
                self.phase = Phase::Reading {
                    recovery,
                    names,
                    current: Some(name),
                };
                op
            }
            (Some(name), DiskReply::Data(bytes)) => {
                recovery.feed(&name, &bytes).map_err(|e| e.to_string())?;
                return self.next_segment(ctx, recovery, names);
            }
            (None, _) => return self.next_segment(ctx, recovery, names),
            (Some(name), other) => return Err(format!("{name}: unexpected reply {other:?}")),
        };
        self.submit(ctx, next_op);
        Ok(())
    }

    fn next_segment(
        &mut self,
        ctx: &mut Context<'_, WalMessage<R>>,
        recovery: Box<Recovery>,
        mut names: VecDeque<String>,
    ) -> Result<(), String> {
        let Some(name) = names.pop_front() else {
            let (wal, _report) = (*recovery).finish().map_err(|e| e.to_string())?;
            let (next, end) = (wal.first_sequence(), wal.next_sequence());
            self.wal = Some(wal);
            return self.continue_verifying(ctx, next, end, ReadPlan::default(), Vec::new());
        };
        self.phase = Phase::Reading {
            recovery,
            names,
            current: Some(name.clone()),
        };
        self.submit(ctx, DiskOp::Len { path: name });
        Ok(())
    }

    /// Reads the recovered log back in plans of bounded size, then starts serving.
    fn continue_verifying(
        &mut self,
        ctx: &mut Context<'_, WalMessage<R>>,
        mut next: u64,
        end: u64,
        plan: ReadPlan,
        replies: Vec<Bytes>,
    ) -> Result<(), String> {
        let wal = self.wal.as_ref().expect("recovered");
        if replies.len() == plan.ops().len() {
            if !replies.is_empty() {
                let entries = plan.decode(&replies).map_err(|e| e.to_string())?;
                self.contents
                    .extend(entries.into_iter().map(|e| (e.sequence, e.payload)));
            }
            if next >= end {
                ctx.observe(WalContents {
                    entries: std::mem::take(&mut self.contents),
                });
                self.phase = Phase::Running;
                self.pump(ctx);
                return Ok(());
            }
            let to = end.min(next + VERIFY_ENTRIES_PER_READ);
            let plan = wal.read_range(next, to).map_err(|e| e.to_string())?;
            // A plan may cover less than asked (it stops at the read size limit).
            let covered = plan.sequences();
            if covered.start != next || covered.end <= next {
                return Err(format!("a read plan for {next}..{to} covers {covered:?}"));
            }
            next = covered.end;
            return self.continue_verifying(ctx, next, end, plan, Vec::new());
        }
        let op = plan.ops()[replies.len()].clone();
        self.phase = Phase::Verifying {
            next,
            end,
            plan,
            replies,
        };
        self.submit(ctx, op);
        Ok(())
    }

    fn on_append(
        &mut self,
        ctx: &mut Context<'_, WalMessage<R>>,
        token: u64,
        payload: Bytes,
        reply: Addr<R>,
    ) {
        let refuse = |ctx: &mut Context<'_, WalMessage<R>>, reason: String| {
            let _ = ctx.send(reply, R::from(WalReply::Refused { token, reason }));
        };
        let (Phase::Running, Some(wal)) = (&self.phase, self.wal.as_mut()) else {
            return refuse(ctx, "the log is recovering".to_string());
        };
        if self.waiting.len() >= WAITING_APPENDS_MAX {
            return refuse(ctx, format!("{WAITING_APPENDS_MAX} appends already wait"));
        }
        match wal.append(RecordType::Entry, payload.clone()) {
            Ok(sequence) => {
                ctx.observe(WalAccepted { sequence, payload });
                self.waiting.insert(sequence, (token, reply));
                self.pump(ctx);
            }
            Err(error) => refuse(ctx, error.to_string()),
        }
    }

    /// Hands the engine's IO to the disk service and its outputs to requesters.
    fn pump(&mut self, ctx: &mut Context<'_, WalMessage<R>>) {
        let Some(wal) = self.wal.as_mut() else { return };
        let now = ctx.now();
        let mut ops = Vec::new();
        while let Some(io) = wal.poll_io(now) {
            ops.push(io);
        }
        let deadline = wal.deadline();
        let mut outputs = Vec::new();
        while let Some(output) = wal.poll_output() {
            outputs.push(output);
        }
        for (tag, op) in ops {
            let Some(id) = self.submit(ctx, op) else {
                return;
            };
            self.in_flight.insert(id, tag);
        }
        if let Some(deadline) = deadline
            && self.timer_deadline != Some(deadline)
        {
            self.timer_deadline = Some(deadline);
            ctx.set_timer(
                deadline.saturating_duration_since(now),
                WalMessage::BatchTimer,
            );
        }
        for output in outputs {
            self.on_output(ctx, output);
        }
    }

    fn on_output(&mut self, ctx: &mut Context<'_, WalMessage<R>>, output: WalOutput) {
        match output {
            WalOutput::Durable { up_to_sequence } => {
                let later = self.waiting.split_off(&(up_to_sequence + 1));
                let durable = std::mem::replace(&mut self.waiting, later);
                for (sequence, (token, reply)) in durable {
                    let _ = ctx.send(reply, R::from(WalReply::Durable { token, sequence }));
                }
            }
            // This actor neither compacts nor resets its log; Raft's will.
            WalOutput::Compacted { .. } | WalOutput::Reset { .. } => {}
            WalOutput::Failed(fatal) => ctx.fail(format!("log: {fatal}")),
        }
    }

    fn on_disk(&mut self, ctx: &mut Context<'_, WalMessage<R>>, completion: DiskCompletion) {
        if let Some(tag) = self.in_flight.remove(&completion.id) {
            if let Some(wal) = self.wal.as_mut() {
                wal.complete(tag, completion.result);
            }
            self.pump(ctx);
            return;
        }
        match completion.result {
            Ok(reply) => self.on_boot_reply(ctx, reply),
            Err(error) => ctx.fail(format!("log recovery: {error}")),
        }
    }
}

impl<R: From<WalReply> + Send + 'static> Actor for WalActor<R> {
    type Message = WalMessage<R>;

    fn on_start(&mut self, ctx: &mut Context<'_, WalMessage<R>>) {
        self.submit(ctx, DiskOp::List);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, WalMessage<R>>, message: WalMessage<R>) {
        match message {
            WalMessage::Append {
                token,
                payload,
                reply,
            } => self.on_append(ctx, token, payload, reply),
            WalMessage::Disk(completion) => self.on_disk(ctx, completion),
            WalMessage::BatchTimer => {
                self.timer_deadline = None;
                self.pump(ctx);
            }
        }
    }
}
