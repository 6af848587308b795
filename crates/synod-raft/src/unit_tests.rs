//! Exact-output tests: a node in a known state, one input, the precise effects and state.

use bytes::Bytes;
use synod_core::{Instant, LogIndex, NodeId, Outbox, Prng, Protocol, Term};

use crate::io::{Input, Output, Persist, Role};
use crate::message::{Message, MessageBody};
use crate::types::{Entry, EntryPayload, HardState, Membership, Recovered};
use crate::{Raft, RaftConfig};

fn node(id: u64, recovered: Recovered) -> Raft {
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    let config = RaftConfig::default();
    Raft::new(
        NodeId(id),
        config,
        Prng::from_seed(id),
        Membership::with_voters(&voters),
        recovered,
    )
}

fn step(raft: &mut Raft, input: Input) -> Vec<Output> {
    let mut out = Outbox::new(1024);
    raft.step(Instant::from_nanos(1_000_000_000), input, &mut out);
    out.drain().collect()
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        time_ns: 0,
        payload: EntryPayload::Noop,
    }
}

fn recovered(term: u64, entries: Vec<Entry>) -> Recovered {
    Recovered {
        hard_state: HardState {
            term: Term(term),
            vote: None,
        },
        snapshot: None,
        entries,
    }
}

fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Input {
    Input::Message(Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    })
}

#[test]
fn a_vote_is_answered_only_after_it_is_durable() {
    // Checks a granted vote first emits the Persist of term and vote, and the response
    // leaves only with the matching Persisted input.
    let mut raft = node(2, recovered(1, vec![entry(1, 1)]));
    // Silence the boot-time stickiness: a node that just started ignores vote requests
    // for one election timeout.
    for _ in 0..RaftConfig::default().election_ticks {
        raft.leader_silence_ticks += 1;
    }
    raft.election_elapsed = 0;
    let request = MessageBody::VoteRequest {
        pre_vote: false,
        transfer: false,
        last_index: LogIndex(1),
        last_term: Term(1),
    };
    let outputs = step(&mut raft, message(1, 2, 2, request));
    let hard_state = HardState {
        term: Term(2),
        vote: Some(NodeId(1)),
    };
    assert_eq!(
        outputs,
        vec![Output::Persist(Persist {
            id: 1,
            hard_state: Some(hard_state),
            snapshot: None,
            truncate_from: None,
            entries: vec![],
        })]
    );
    let outputs = step(&mut raft, Input::Persisted { id: 1 });
    let response = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(2),
        body: MessageBody::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    };
    assert_eq!(outputs, vec![Output::Send(response)]);
}

#[test]
fn a_vote_request_inside_the_leader_lease_is_ignored() {
    // Checks stickiness: a node that heard from a leader recently neither votes nor
    // raises its term.
    let mut raft = node(2, recovered(1, vec![]));
    let request = MessageBody::VoteRequest {
        pre_vote: false,
        transfer: false,
        last_index: LogIndex(5),
        last_term: Term(1),
    };
    let outputs = step(&mut raft, message(3, 2, 7, request));
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(raft.term(), Term(1));
    assert_eq!(raft.stats().votes_ignored_in_lease, 1);
}

#[test]
fn an_append_from_an_old_term_is_answered_with_the_current_term() {
    // Checks the generation clock: a deposed leader's append is refused and told the term.
    let mut raft = node(2, recovered(5, vec![entry(1, 5)]));
    let request = MessageBody::AppendRequest {
        prev_index: LogIndex(1),
        prev_term: Term(5),
        entries: vec![entry(2, 3)],
        commit: LogIndex(1),
        sequence: 9,
    };
    let outputs = step(&mut raft, message(1, 2, 3, request));
    let answer = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(5),
        body: MessageBody::AppendResponse {
            success: false,
            index: LogIndex(2),
            hint_term: None,
            sequence: 9,
            clock_nanos: 1_000_000_000,
        },
    };
    assert_eq!(outputs, vec![Output::Send(answer)]);
    assert_eq!(raft.last_index(), LogIndex(1));
    assert_eq!(raft.stats().messages_stale_term, 1);
}

#[test]
fn a_follower_appends_persists_then_acknowledges() {
    // Checks the follower's append: Persist of the new entries first, the success answer
    // only after Persisted, and the commit index capped by what it matched.
    let mut raft = node(2, recovered(2, vec![entry(1, 1)]));
    let request = MessageBody::AppendRequest {
        prev_index: LogIndex(1),
        prev_term: Term(1),
        entries: vec![entry(2, 2), entry(3, 2)],
        commit: LogIndex(9),
        sequence: 4,
    };
    let outputs = step(&mut raft, message(1, 2, 2, request));
    assert!(matches!(
        &outputs[0],
        Output::RoleChanged {
            role: Role::Follower,
            ..
        }
    ));
    // The entry recovered from disk is durable and now committed: it applies at once.
    assert_eq!(outputs[1], Output::Apply(vec![entry(1, 1)]));
    assert_eq!(
        outputs[2],
        Output::Persist(Persist {
            id: 1,
            hard_state: None,
            snapshot: None,
            truncate_from: None,
            entries: vec![entry(2, 2), entry(3, 2)],
        })
    );
    assert_eq!(
        outputs.len(),
        3,
        "nothing acknowledged or applied before durability"
    );
    assert_eq!(raft.commit_index(), LogIndex(3));
    let outputs = step(&mut raft, Input::Persisted { id: 1 });
    let ack = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(2),
        body: MessageBody::AppendResponse {
            success: true,
            index: LogIndex(3),
            hint_term: None,
            sequence: 4,
            clock_nanos: 1_000_000_000,
        },
    };
    assert_eq!(
        outputs,
        vec![
            Output::Send(ack),
            Output::Apply(vec![entry(2, 2), entry(3, 2)])
        ]
    );
}

#[test]
fn a_proposal_to_a_follower_names_the_leader() {
    // Checks NotLeader carries the leader hint and nothing enters the log.
    let mut raft = node(2, recovered(2, vec![]));
    let heartbeat = MessageBody::AppendRequest {
        prev_index: LogIndex(0),
        prev_term: Term(0),
        entries: vec![],
        commit: LogIndex(0),
        sequence: 1,
    };
    step(&mut raft, message(3, 2, 2, heartbeat));
    let outputs = step(
        &mut raft,
        Input::Propose {
            id: 5,
            payload: Bytes::from_static(b"x"),
            time_ns: 0,
        },
    );
    assert_eq!(
        outputs,
        vec![Output::Rejected {
            id: 5,
            error: crate::ProposeError::NotLeader {
                leader_hint: Some(NodeId(3))
            }
        }]
    );
    assert_eq!(raft.last_index(), LogIndex(0));
}

#[test]
fn an_own_snapshot_finishing_after_an_installed_one_is_ignored() {
    // Checks the race the simulator found: the node's own snapshot is written while the
    // leader's snapshot replaces the log; the late one must be dropped, not trip an assert.
    let entries = (1..=3).map(|index| entry(index, 1)).collect();
    let mut raft = node(2, recovered(1, entries));
    let append = MessageBody::AppendRequest {
        prev_index: LogIndex(3),
        prev_term: Term(1),
        entries: vec![],
        commit: LogIndex(3),
        sequence: 1,
    };
    step(&mut raft, message(1, 2, 1, append));
    assert_eq!(raft.applied_index(), LogIndex(3));
    let meta = crate::SnapshotMeta {
        last_index: LogIndex(10),
        last_term: Term(1),
        membership: raft.membership().clone(),
    };
    let install = MessageBody::InstallSnapshot {
        meta: meta.clone(),
        offset: 0,
        size: 2,
        data: Bytes::from_static(b"kv"),
        sequence: 2,
    };
    let outputs = step(&mut raft, message(1, 2, 1, install));
    assert!(matches!(outputs.last(), Some(Output::Persist(p)) if p.snapshot.is_some()));
    let own = crate::Snapshot {
        meta: crate::SnapshotMeta {
            last_index: LogIndex(3),
            ..meta
        },
        data: Bytes::from_static(b"old"),
    };
    let outputs = step(&mut raft, Input::SnapshotTaken { snapshot: own });
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(raft.first_index(), LogIndex(11));
}

#[test]
fn compaction_keeps_the_configuration_its_entries_carried() {
    // Checks the bug the simulator found: compacting away the entry that carried the
    // configuration must not revert the node to an older one.
    let two = Membership::with_voters(&[NodeId(2), NodeId(3)]);
    let mut entries: Vec<Entry> = (1..=6).map(|index| entry(index, 1)).collect();
    entries[2].payload = EntryPayload::Membership(two.clone());
    let mut raft = node(2, recovered(1, entries));
    let append = MessageBody::AppendRequest {
        prev_index: LogIndex(6),
        prev_term: Term(1),
        entries: vec![],
        commit: LogIndex(6),
        sequence: 1,
    };
    step(&mut raft, message(3, 2, 1, append));
    assert_eq!(raft.applied_index(), LogIndex(6));
    let snapshot = crate::Snapshot {
        meta: crate::SnapshotMeta {
            last_index: LogIndex(6),
            last_term: Term(1),
            membership: raft.membership_at(LogIndex(6)),
        },
        data: Bytes::from_static(b"kv"),
    };
    assert_eq!(snapshot.meta.membership, two);
    raft.config.snapshot_trailing_entries = 0;
    step(&mut raft, Input::SnapshotTaken { snapshot });
    assert_eq!(raft.first_index(), LogIndex(7));
    assert_eq!(raft.membership(), &two);
    assert_eq!(raft.membership_at(LogIndex(6)), two);
}

/// At `at`, starts a ReadIndex round at the leader `raft` and answers it from every
/// follower one millisecond later, each reporting its clock as `clocks` gives it.
fn answer_round(raft: &mut Raft, at: Instant, clocks: &[(NodeId, Instant)], read: u64) {
    let mut out = Outbox::new(1024);
    let level = crate::ReadLevel::Linearizable;
    raft.step(at, Input::Read { id: read, level }, &mut out);
    let requests: Vec<Message> = out
        .drain()
        .filter_map(|output| match output {
            Output::Send(message) => Some(message),
            _ => None,
        })
        .collect();
    let answered_at = at + synod_core::Duration::from_millis(1);
    for (follower, clock) in clocks {
        let Some(MessageBody::AppendRequest { sequence, .. }) = requests
            .iter()
            .find(|message| message.to == *follower)
            .map(|message| &message.body)
        else {
            panic!("no append request to {follower} in {requests:?}");
        };
        let answer = MessageBody::AppendResponse {
            success: true,
            index: raft.last_index(),
            hint_term: None,
            sequence: *sequence,
            clock_nanos: clock.as_nanos(),
        };
        let input = message(follower.get(), raft.id().get(), raft.term().get(), answer);
        raft.step(answered_at, input, &mut out);
        out.drain().for_each(drop);
    }
}

#[test]
fn a_voter_clock_outside_the_drift_bound_suspends_the_lease_until_it_ages_out() {
    // Checks the skew policy with exact outputs: a follower whose clock runs 5% fast (the
    // bound is 1%) turns a lease read into a ReadIndex round (heartbeats, no ReadReady),
    // counted in lease_refused_skew, with the proven skew exposed; once its samples have aged
    // out of the 2 s horizon and it runs at the leader's rate, the lease serves again.
    let mut cluster = crate::cluster_tests::Cluster::new(3, RaftConfig::default(), 1);
    let leader = cluster.elect(100);
    let mut raft = cluster.nodes.remove(&leader).expect("the leader").raft;
    let followers: Vec<NodeId> = raft.followers().iter().map(|view| view.node).collect();
    let (fast, steady) = (followers[0], followers[1]);
    let ms = synod_core::Duration::from_millis;
    let start = raft.now + synod_core::Duration::from_secs(1);
    let (fast_origin, steady_origin) = (Instant::from_nanos(500_000), Instant::from_nanos(7));
    answer_round(
        &mut raft,
        start,
        &[(fast, fast_origin), (steady, steady_origin)],
        1,
    );
    let lease = crate::ReadLevel::Lease;
    let outputs = step_at(
        &mut raft,
        start + ms(2),
        Input::Read {
            id: 2,
            level: lease,
        },
    );
    let commit = raft.commit_index();
    assert_eq!(
        outputs,
        vec![Output::ReadReady {
            id: 2,
            index: commit
        }]
    );

    let later = [
        (fast, fast_origin + ms(1_050)),
        (steady, steady_origin + ms(1_000)),
    ];
    answer_round(&mut raft, start + ms(1_000), &later, 3);
    assert_eq!(raft.clock_skew_ppm_max(), 48_951);
    assert!(raft.lease_suspended_by_skew());
    let sequence = raft.append_sequence;
    let outputs = step_at(
        &mut raft,
        start + ms(1_002),
        Input::Read {
            id: 4,
            level: lease,
        },
    );
    let last = raft.last_index();
    let heartbeat = |to: NodeId, sequence: u64| {
        Output::Send(Message {
            from: leader,
            to,
            term: raft.term(),
            body: MessageBody::AppendRequest {
                prev_index: last,
                prev_term: raft.term_at(last).expect("the last term"),
                entries: vec![],
                commit,
                sequence,
            },
        })
    };
    assert_eq!(
        outputs,
        vec![
            heartbeat(fast, sequence + 1),
            heartbeat(steady, sequence + 2)
        ]
    );
    assert_eq!(raft.stats().lease_refused_skew, 1);
    assert_eq!(raft.stats().reads_lease, 1);

    // The fast clock returns to the leader's rate; the old samples age out.
    let back = [
        (fast, fast_origin + ms(3_550)),
        (steady, steady_origin + ms(3_500)),
    ];
    answer_round(&mut raft, start + ms(3_500), &back, 5);
    let again = [
        (fast, fast_origin + ms(4_050)),
        (steady, steady_origin + ms(4_000)),
    ];
    answer_round(&mut raft, start + ms(4_000), &again, 6);
    assert_eq!(raft.clock_skew_ppm_max(), 0);
    assert!(!raft.lease_suspended_by_skew());
    let outputs = step_at(
        &mut raft,
        start + ms(4_002),
        Input::Read {
            id: 7,
            level: lease,
        },
    );
    assert_eq!(
        outputs,
        vec![Output::ReadReady {
            id: 7,
            index: commit
        }]
    );
    assert_eq!(raft.stats().lease_refused_skew, 1);
    assert_eq!(raft.stats().reads_lease, 2);
}

fn step_at(raft: &mut Raft, now: Instant, input: Input) -> Vec<Output> {
    let mut out = Outbox::new(1024);
    raft.step(now, input, &mut out);
    out.drain().collect()
}

/// A node of the three-voter cluster made pre-candidate for term 2, its leader lease lapsed.
fn pre_candidate(id: u64) -> Raft {
    let mut raft = node(id, recovered(1, vec![entry(1, 1)]));
    raft.leader_silence_ticks = RaftConfig::default().election_ticks;
    let mut out = Outbox::new(16);
    raft.campaign(false, &mut out);
    assert_eq!(raft.role(), Role::PreCandidate);
    raft
}

fn pre_vote_request(from: u64, to: u64, last_index: u64) -> Input {
    let body = MessageBody::VoteRequest {
        pre_vote: true,
        transfer: false,
        last_index: LogIndex(last_index),
        last_term: Term(1),
    };
    message(from, to, 2, body)
}

fn pre_vote_response(from: u64, to: u64, term: u64, granted: bool) -> Output {
    Output::Send(Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: MessageBody::VoteResponse {
            pre_vote: true,
            granted,
        },
    })
}

#[test]
fn of_two_pre_candidates_with_equal_logs_the_lower_id_goes_on() {
    // Checks the tie-break between concurrent pre-candidates for the same term: node 2
    // grants node 1's pre-vote and yields (back to follower, term unchanged), while node 1
    // refuses node 2's and stays pre-candidate, so only one of them can raise the term.
    let mut node_2 = pre_candidate(2);
    let outputs = step(&mut node_2, pre_vote_request(1, 2, 1));
    let yielded = Output::RoleChanged {
        role: Role::Follower,
        term: Term(1),
        leader: None,
    };
    assert_eq!(outputs, vec![yielded, pre_vote_response(2, 1, 2, true)]);
    assert_eq!((node_2.role(), node_2.term()), (Role::Follower, Term(1)));

    let mut node_1 = pre_candidate(1);
    let outputs = step(&mut node_1, pre_vote_request(2, 1, 1));
    assert_eq!(
        outputs,
        vec![
            pre_vote_response(1, 2, 1, false),
            pre_vote_request_sent(1, 2, 1)
        ]
    );
    assert_eq!(node_1.role(), Role::PreCandidate);
}

/// The pre-vote request `from` sends `to` for term 2, its log ending at `last_index` in
/// term 1.
fn pre_vote_request_sent(from: u64, to: u64, last_index: u64) -> Output {
    let Input::Message(message) = pre_vote_request(from, to, last_index) else {
        unreachable!("pre_vote_request builds a received message");
    };
    Output::Send(message)
}

#[test]
fn a_pre_candidate_asks_again_a_rival_that_ignored_its_request_and_the_rival_yields() {
    // Checks the case a live cluster hit: node 1's pre-vote reached node 2 while node 2
    // still heard from the leader (ignored, no answer); node 2 then campaigned too. Node 1,
    // which outranks it, refuses node 2's request and sends its own again; node 2, now a
    // pre-candidate, grants it and yields, and node 1 wins its pre-vote at once instead of
    // waiting out a new election timeout. A rival that already answered is not asked again.
    let mut node_1 = pre_candidate(1);
    let mut node_2 = node(2, recovered(1, vec![entry(1, 1)]));
    assert!(step(&mut node_2, pre_vote_request(1, 2, 1)).is_empty());
    node_2.leader_silence_ticks = RaftConfig::default().election_ticks;
    let mut out = Outbox::new(16);
    node_2.campaign(false, &mut out);
    let outputs = step(&mut node_1, pre_vote_request(2, 1, 1));
    assert_eq!(outputs[1], pre_vote_request_sent(1, 2, 1));
    let Output::Send(again) = outputs[1].clone() else {
        unreachable!()
    };
    let outputs = step(&mut node_2, Input::Message(again));
    assert_eq!(outputs.last(), Some(&pre_vote_response(2, 1, 2, true)));
    assert_eq!(node_2.role(), Role::Follower);
    step(&mut node_1, pre_vote_response_input(2, 1, 2, true));
    assert_eq!(node_1.role(), Role::Candidate);

    let mut node_1 = pre_candidate(1);
    step(&mut node_1, pre_vote_response_input(2, 1, 1, false));
    let outputs = step(&mut node_1, pre_vote_request(2, 1, 1));
    assert_eq!(outputs, vec![pre_vote_response(1, 2, 1, false)]);
}

fn pre_vote_response_input(from: u64, to: u64, term: u64, granted: bool) -> Input {
    let Output::Send(message) = pre_vote_response(from, to, term, granted) else {
        unreachable!("pre_vote_response builds a send");
    };
    Input::Message(message)
}

#[test]
fn a_pre_candidate_yields_to_a_rival_with_a_longer_log_whatever_the_ids() {
    // Checks the log decides before the id: node 1 yields to node 3, whose log is longer,
    // and node 3 refuses node 1, whose log is shorter (as any voter would).
    let mut node_1 = pre_candidate(1);
    let outputs = step(&mut node_1, pre_vote_request(3, 1, 2));
    assert_eq!(outputs.last(), Some(&pre_vote_response(1, 3, 2, true)));
    assert_eq!(node_1.role(), Role::Follower);

    let mut node_3 = node(3, recovered(1, vec![entry(1, 1), entry(2, 1)]));
    node_3.leader_silence_ticks = RaftConfig::default().election_ticks;
    let mut out = Outbox::new(16);
    node_3.campaign(false, &mut out);
    let outputs = step(&mut node_3, pre_vote_request(1, 3, 1));
    assert_eq!(outputs[0], pre_vote_response(3, 1, 1, false));
    assert_eq!(node_3.role(), Role::PreCandidate);
}
