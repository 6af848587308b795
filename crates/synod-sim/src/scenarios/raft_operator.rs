//! The operator of the raft scenario: now and then it changes the cluster under the load —
//! it removes a voter, adds a node back as a learner, promotes a learner, or hands
//! leadership to another node — through the replicas' admin requests, so that membership
//! changes (joint consensus) and leader transfers happen during every run. It is stateless:
//! it picks a random change of a random node each time and lets the leader refuse the ones
//! that do not apply (adding a member, promoting a voter, a learner not yet caught up).

use synod_actor::{Actor, Context, Inbound, Port, TimerId};
use synod_core::{Duration, NodeId};
use synod_node::CLIENT_PORT;
use synod_node::client::{AdminRequest, ClientRequest, ClientResponse, Outcome, RequestBody};
use synod_raft::MembershipChange;

/// The port operator answers arrive on.
pub const OPERATOR_PORT: Port = Port(90);

/// What the operator does, and how often.
#[derive(Clone, Debug)]
pub struct OperatorPlan {
    /// Time between changes (on the operator node's clock).
    pub interval: Duration,
    /// A change without an answer after this long is given up.
    pub request_timeout: Duration,
    /// Changes per operator incarnation, at most.
    pub changes_max: u64,
}

impl Default for OperatorPlan {
    fn default() -> OperatorPlan {
        OperatorPlan {
            interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            changes_max: 1_000,
        }
    }
}

/// Observation: a change the operator asked for and what came of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorChange {
    pub request: String,
    pub outcome: String,
}

#[derive(Debug)]
pub enum OperatorMessage {
    Inbound(Inbound),
    Next,
    Timeout { request: u64 },
}

impl From<Inbound> for OperatorMessage {
    fn from(inbound: Inbound) -> OperatorMessage {
        OperatorMessage::Inbound(inbound)
    }
}

pub struct Operator {
    nodes_count: usize,
    plan: OperatorPlan,
    leader_guess: NodeId,
    next_request: u64,
    pending: Option<(u64, AdminRequest, TimerId)>,
    changes_count: u64,
}

impl Operator {
    pub fn new(nodes_count: usize, plan: OperatorPlan) -> Operator {
        Operator {
            nodes_count,
            plan,
            leader_guess: NodeId(1),
            next_request: 0,
            pending: None,
            changes_count: 0,
        }
    }

    fn random_node(&self, ctx: &mut Context<'_, OperatorMessage>) -> NodeId {
        NodeId(1 + ctx.random_u64() % self.nodes_count as u64)
    }

    fn choose(&self, ctx: &mut Context<'_, OperatorMessage>) -> AdminRequest {
        let node = self.random_node(ctx);
        match ctx.random_u64() % 10 {
            0..=3 => AdminRequest::TransferLeadership(node),
            4 | 5 => AdminRequest::ChangeMembership(MembershipChange::Remove(node)),
            6 | 7 => AdminRequest::ChangeMembership(MembershipChange::AddLearner(node)),
            _ => AdminRequest::ChangeMembership(MembershipChange::Promote(node)),
        }
    }

    fn on_next(&mut self, ctx: &mut Context<'_, OperatorMessage>) {
        ctx.set_timer(self.plan.interval, OperatorMessage::Next);
        if self.pending.is_some() || self.changes_count >= self.plan.changes_max {
            return;
        }
        self.changes_count += 1;
        self.next_request += 1;
        let request = self.next_request;
        let admin = self.choose(ctx);
        let message = ClientRequest {
            id: request,
            reply_port: OPERATOR_PORT.0,
            body: RequestBody::Admin(admin.clone()),
        };
        // A send that fails is like a lost message: the timeout covers it.
        let _ = ctx.send_to_node(self.leader_guess, CLIENT_PORT, message.encode());
        let timer = ctx.set_timer(
            self.plan.request_timeout,
            OperatorMessage::Timeout { request },
        );
        self.pending = Some((request, admin, timer));
    }

    fn on_response(&mut self, ctx: &mut Context<'_, OperatorMessage>, inbound: Inbound) {
        let Ok(response) = ClientResponse::decode(&inbound.payload) else {
            return;
        };
        let Some((request, admin, timer)) = self.pending.take() else {
            return;
        };
        if response.id != request {
            self.pending = Some((request, admin, timer));
            return;
        }
        ctx.cancel_timer(timer);
        if let Outcome::NotLeader { leader } = &response.outcome {
            self.leader_guess = match leader {
                Some(leader) if *leader != inbound.from => *leader,
                _ => self.random_node(ctx),
            };
        }
        ctx.observe(OperatorChange {
            request: format!("{admin:?}"),
            outcome: format!("{:?}", response.outcome),
        });
    }
}

impl Actor for Operator {
    type Message = OperatorMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, OperatorMessage>) {
        if let Err(error) = ctx.bind(OPERATOR_PORT) {
            return ctx.fail(format!("operator: cannot bind {OPERATOR_PORT}: {error}"));
        }
        ctx.set_timer(self.plan.interval, OperatorMessage::Next);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, OperatorMessage>, message: OperatorMessage) {
        match message {
            OperatorMessage::Inbound(inbound) => self.on_response(ctx, inbound),
            OperatorMessage::Next => self.on_next(ctx),
            OperatorMessage::Timeout { request } => {
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|(pending, ..)| *pending == request)
                {
                    self.pending = None;
                    self.leader_guess = self.random_node(ctx);
                }
            }
        }
    }
}
