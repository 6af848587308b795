//! The network-namespace path: every node in its own Linux network namespace with its own
//! address, partitions made with iptables inside the namespaces. Needs root, `ip` (iproute2,
//! which also brings `ss`) and `iptables`.
//!
//! The layout of run `R` (the nemesis's pid, so that concurrent runs never share a name):
//!
//! ```text
//!  root namespace: bridge synod-brR, address 10.X.Y.254/24 (the nemesis and its clients)
//!     |-- veth synod-RvI <-> eth0 in namespace synod-R-nI, address 10.X.Y.I/24 (node I)
//! ```
//!
//! `10.X.Y.0/24` is derived from `R` and skipped when any address or route of the machine
//! overlaps it, so the subnet is only ever on the run's own bridge and no packet leaves the
//! machine. Each node listens for RESP, HTTP and peers on its namespace address (fixed ports:
//! every namespace has its own port space). A dropped link `from -> to` is two DROP rules in
//! `to`'s namespace, tagged with a per-run comment, matching the one TCP connection `from`
//! dials to `to`'s peer port: packets from `from` to the peer port and packets back to
//! `from` from the peer port. The link `to -> from` (to's own connection, whose remote port
//! is the peer port and whose local port is ephemeral) is untouched, so a one-way partition
//! stays one-way, as with the proxy. A reset also closes the link's open connections with
//! `ss -K` on both ends. Everything is removed when the `Netns` is dropped (after the
//! cluster, whose processes are then dead), and at start-up the leftovers of earlier runs
//! whose nemesis process is gone are removed: nothing without the `synod-` names and a dead
//! owner's pid is ever touched.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use super::proxy::LinkMode;

/// Every node's ports on its own namespace address.
pub const RESP_PORT: u16 = 7379;
pub const HTTP_PORT: u16 = 7380;
pub const PEER_PORT: u16 = 7390;
/// Linux's default first ephemeral port: a dialer's source port is never the peer port, so
/// the rules of link i->j never match the connection j dials to i.
const EPHEMERAL_PORT_MIN: u16 = 32_768;
const _: () = assert!(PEER_PORT < EPHEMERAL_PORT_MIN);
const _: () = assert!(RESP_PORT != PEER_PORT && HTTP_PORT != PEER_PORT);

/// Node ids are one digit, so that `synod-<pid>v<id>` fits a link name.
pub const NODES_MAX: u64 = 9;
/// The kernel's limit on an interface name (IFNAMSIZ less the terminating NUL).
const LINK_NAME_LENGTH_MAX: usize = 15;
/// The largest pid Linux hands out (PID_MAX_LIMIT), seven digits: `synod-br4194304` is 15.
const RUN_MAX: u32 = 4_194_304;
/// Candidate subnets tried before giving up on a free one.
const SUBNET_ATTEMPTS_MAX: u64 = 64;
/// Candidate subnets are the 16 384 /24s of 10.64.0.0/10.
const SUBNET_CANDIDATES_COUNT: u64 = 64 * 256;
/// The root namespace's host number on the bridge.
const BRIDGE_HOST: u8 = 254;
/// How long iptables waits for the xtables lock (seconds) before it fails.
const IPTABLES_LOCK_WAIT_SECONDS: &str = "5";
/// `ss` options that close the selected TCP sockets (the kernel needs
/// CONFIG_INET_DIAG_DESTROY; without it `ss` still exits 0, hence the check after).
pub const SS_KILL: &[&str] = &["-K", "-t"];
/// `ss` options that list the selected established TCP sockets, one a line, no header.
pub const SS_LIST_ESTABLISHED: &[&str] = &["-t", "-H", "state", "established"];

/// The names and addresses of one run: pure, so that the exact commands can be tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The owning nemesis's pid.
    pub run: u32,
    pub nodes_count: u64,
    /// The first three octets of the run's /24.
    pub subnet: [u8; 3],
}

/// One iptables rule in a node's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub namespace: String,
    /// `INPUT` or `OUTPUT`.
    pub chain: &'static str,
    /// The match, after the chain and before the comment and target.
    pub matches: Vec<String>,
    pub tag: String,
}

impl Rule {
    /// The command that appends (`-A`) or deletes (`-D`) the rule.
    pub fn command(&self, action: &str) -> Vec<String> {
        assert!(
            action == "-A" || action == "-D",
            "not a rule action: {action}"
        );
        let mut command = strings(&["ip", "netns", "exec", &self.namespace, "iptables"]);
        command.extend(strings(&[
            "-w",
            IPTABLES_LOCK_WAIT_SECONDS,
            action,
            self.chain,
        ]));
        command.extend(self.matches.iter().cloned());
        command.extend(strings(&[
            "-m",
            "comment",
            "--comment",
            &self.tag,
            "-j",
            "DROP",
        ]));
        command
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

/// The `index`-th candidate /24 of run `run`: spread over 10.64.0.0/10 by the pid, so that
/// concurrent runs start from different subnets.
pub fn subnet_candidate(run: u32, attempt: u64) -> [u8; 3] {
    let value = (u64::from(run) + attempt * 4_099) % SUBNET_CANDIDATES_COUNT;
    let high = u8::try_from(64 + value / 256).expect("below 128");
    let low = u8::try_from(value % 256).expect("below 256");
    [10, high, low]
}

/// Whether any IPv4 address or prefix written in `text` (the output of `ip -4 addr` and
/// `ip -4 route`) overlaps `subnet`/24. The default route (`default`, not a prefix) does not
/// count, but its gateway address does.
pub fn subnet_in_use(subnet: [u8; 3], text: &str) -> bool {
    let ours = u32::from_be_bytes([subnet[0], subnet[1], subnet[2], 0]);
    text.split_whitespace().any(|token| {
        let (address, length) = match token.split_once('/') {
            Some((address, length)) => (address, length.parse::<u32>().ok()),
            None => (token, Some(32)),
        };
        let (Ok(address), Some(length @ 1..=32)) = (address.parse::<Ipv4Addr>(), length) else {
            return false;
        };
        let common = length.min(24);
        let mask = u32::MAX << (32 - common);
        u32::from(address) & mask == ours & mask
    })
}

impl Plan {
    pub fn new(run: u32, nodes_count: u64, subnet: [u8; 3]) -> Plan {
        assert!((1..=RUN_MAX).contains(&run), "run id {run} out of range");
        assert!((1..=NODES_MAX).contains(&nodes_count));
        assert!(subnet[0] == 10, "the run's subnet must be private");
        let plan = Plan {
            run,
            nodes_count,
            subnet,
        };
        assert!(plan.bridge().len() <= LINK_NAME_LENGTH_MAX);
        assert!(plan.veth(nodes_count).len() <= LINK_NAME_LENGTH_MAX);
        plan
    }

    pub fn bridge(&self) -> String {
        format!("synod-br{}", self.run)
    }

    pub fn namespace(&self, node: u64) -> String {
        format!("synod-{}-n{node}", self.run)
    }

    /// The root namespace's end of node `node`'s veth pair (the other end is `eth0`).
    pub fn veth(&self, node: u64) -> String {
        format!("synod-{}v{node}", self.run)
    }

    /// The comment on every iptables rule of the run.
    pub fn tag(&self) -> String {
        format!("synod-nemesis-{}", self.run)
    }

    pub fn node_ip(&self, node: u64) -> Ipv4Addr {
        assert!((1..=self.nodes_count).contains(&node));
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, u8::try_from(node).expect("one digit"))
    }

    pub fn bridge_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, BRIDGE_HOST)
    }

    fn nodes(&self) -> std::ops::RangeInclusive<u64> {
        1..=self.nodes_count
    }

    /// The commands that build the run's network, in order.
    pub fn setup_commands(&self) -> Vec<Vec<String>> {
        let bridge = self.bridge();
        let bridge_address = format!("{}/24", self.bridge_ip());
        let mut commands = vec![
            strings(&["ip", "link", "add", &bridge, "type", "bridge"]),
            strings(&["ip", "addr", "add", &bridge_address, "dev", &bridge]),
            strings(&["ip", "link", "set", &bridge, "up"]),
        ];
        for node in self.nodes() {
            let namespace = self.namespace(node);
            let veth = self.veth(node);
            let address = format!("{}/24", self.node_ip(node));
            commands.extend([
                strings(&["ip", "netns", "add", &namespace]),
                strings(&["ip", "-n", &namespace, "link", "set", "lo", "up"]),
                strings(&[
                    "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                ])
                .into_iter()
                .chain(strings(&["netns", &namespace]))
                .collect(),
                strings(&["ip", "link", "set", &veth, "master", &bridge, "up"]),
                strings(&[
                    "ip", "-n", &namespace, "addr", "add", &address, "dev", "eth0",
                ]),
                strings(&["ip", "-n", &namespace, "link", "set", "eth0", "up"]),
            ]);
        }
        commands
    }

    /// The commands that remove everything `setup_commands` creates (each may fail when
    /// its object was never made). Deleting a veth end deletes its pair; deleting a
    /// namespace removes its iptables rules.
    pub fn teardown_commands(&self) -> Vec<Vec<String>> {
        let mut commands = Vec::new();
        for node in self.nodes() {
            commands.push(strings(&["ip", "link", "del", &self.veth(node)]));
        }
        for node in self.nodes() {
            commands.push(strings(&["ip", "netns", "del", &self.namespace(node)]));
        }
        commands.push(strings(&["ip", "link", "del", &self.bridge()]));
        commands
    }

    /// The prefix that runs a command inside node `node`'s namespace.
    pub fn launcher(&self, node: u64) -> Vec<String> {
        strings(&["ip", "netns", "exec", &self.namespace(node)])
    }

    /// The two rules that drop link `from -> to`, both in `to`'s namespace: what `from`
    /// sends to the peer port, and what goes back to `from` from the peer port.
    pub fn link_rules(&self, from: u64, to: u64) -> [Rule; 2] {
        assert!(from != to);
        let peer = self.node_ip(from).to_string();
        let port = PEER_PORT.to_string();
        let rule = |chain, matches: &[&str]| Rule {
            namespace: self.namespace(to),
            chain,
            matches: strings(matches),
            tag: self.tag(),
        };
        [
            rule("INPUT", &["-s", &peer, "-p", "tcp", "--dport", &port]),
            rule("OUTPUT", &["-d", &peer, "-p", "tcp", "--sport", &port]),
        ]
    }

    /// The `ss` commands, with `options` (`SS_KILL` or `SS_LIST_ESTABLISHED`), that select
    /// the open connections of link `from -> to` on both ends: in `from`'s namespace the
    /// socket that dialed `to`'s peer port, in `to`'s the one that accepted it.
    pub fn socket_commands(&self, from: u64, to: u64, options: &[&str]) -> [Vec<String>; 2] {
        let port = format!(":{PEER_PORT}");
        let from_ip = self.node_ip(from).to_string();
        let to_ip = self.node_ip(to).to_string();
        let in_namespace = |node: u64, filter: &[&str]| {
            let mut command = self.launcher(node);
            command.push("ss".to_owned());
            command.extend(strings(options));
            command.extend(strings(filter));
            command
        };
        [
            in_namespace(from, &["dst", &to_ip, "dport", "=", &port]),
            in_namespace(to, &["src", &to_ip, "sport", "=", &port, "dst", &from_ip]),
        ]
    }
}

/// The pid in a namespace name of the run layout (`synod-<pid>-n<id>`).
pub fn namespace_owner(name: &str) -> Option<u32> {
    let (pid, node) = name.strip_prefix("synod-")?.split_once("-n")?;
    digits(node)?;
    digits(pid)
}

/// The pid in a link name of the run layout (`synod-br<pid>` or `synod-<pid>v<id>`).
pub fn link_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("synod-")?;
    if let Some(pid) = rest.strip_prefix("br") {
        return digits(pid);
    }
    let (pid, node) = rest.split_once('v')?;
    digits(node)?;
    digits(pid)
}

fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The interface names in the output of `ip -o link show` (`7: name@if2: <...>`).
pub fn link_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .collect()
}

/// The namespace names in the output of `ip netns list` (`name (id: 3)` or `name`).
pub fn namespace_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

/// Why the namespace path cannot run here, or None when it can: root, and `ip`, `ss` and
/// `iptables` runnable.
pub fn unavailable_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if effective_uid != Some("0") {
        return Some("not running as root".to_owned());
    }
    for (tool, flag, package) in [
        ("ip", "-V", "iproute2"),
        ("ss", "-V", "iproute2"),
        ("iptables", "-V", "iptables"),
    ] {
        let runs = Command::new(tool)
            .arg(flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !runs {
            return Some(format!(
                "`{tool}` is not installed (Debian package {package})"
            ));
        }
    }
    None
}

/// Runs `command`, failing with its stderr.
fn run(command: &[String]) -> anyhow::Result<String> {
    let output = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", command.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            command.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `pid` is a live `synod nemesis` (or `synod lab partition`, which builds its
/// network with this harness) other than this one.
fn nemesis_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        // Anything named after this process's pid is left from an earlier process that had
        // the same pid: this one has made nothing yet.
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let arguments: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
    let program = arguments.first().copied().unwrap_or_default();
    let program = program
        .rsplit(|&byte| byte == b'/')
        .next()
        .unwrap_or_default();
    let lab_partition = arguments.contains(&&b"lab"[..]) && arguments.contains(&&b"partition"[..]);
    program.starts_with(b"synod") && (arguments.contains(&&b"nemesis"[..]) || lab_partition)
}

/// Removes what earlier runs left behind when their nemesis died without cleaning up
/// (kill -9, a power cut): their namespaces (after killing the processes still in them, all
/// started by that nemesis), veths and bridges. Only names of the run layout whose owner
/// pid is no live `synod nemesis` are touched.
fn remove_stale() -> anyhow::Result<()> {
    let namespaces = run(&strings(&["ip", "netns", "list"]))?;
    for name in namespace_names(&namespaces) {
        let Some(owner) = namespace_owner(name) else {
            continue;
        };
        if nemesis_alive(owner) {
            continue;
        }
        eprintln!("nemesis: removing namespace {name}, left by a dead nemesis (pid {owner})");
        let pids = run(&strings(&["ip", "netns", "pids", name])).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = run(&strings(&["kill", "-9", pid]));
        }
        let _ = run(&strings(&["ip", "netns", "del", name]));
    }
    let links = run(&strings(&["ip", "-o", "link", "show"]))?;
    let mut stale: Vec<&str> = link_names(&links)
        .into_iter()
        .filter(|name| link_owner(name).is_some_and(|owner| !nemesis_alive(owner)))
        .collect();
    // Veths first: a bridge goes last, once nothing is attached to it.
    stale.sort_by_key(|name| name.starts_with("synod-br"));
    for name in stale {
        eprintln!("nemesis: removing link {name}, left by a dead nemesis");
        let _ = run(&strings(&["ip", "link", "del", name]));
    }
    Ok(())
}

/// Picks a /24 that no address or route of the machine overlaps.
fn free_subnet(run_id: u32) -> anyhow::Result<[u8; 3]> {
    let mut in_use = run(&strings(&["ip", "-4", "-o", "addr", "show"]))?;
    in_use.push_str(&run(&strings(&[
        "ip", "-4", "route", "show", "table", "all",
    ]))?);
    (0..SUBNET_ATTEMPTS_MAX)
        .map(|attempt| subnet_candidate(run_id, attempt))
        .find(|&subnet| !subnet_in_use(subnet, &in_use))
        .with_context(|| {
            format!("no free /24 in 10.64.0.0/10 after {SUBNET_ATTEMPTS_MAX} candidates")
        })
}

/// The run's namespaces, bridge and veths, and the partition rules in force. Dropping it
/// removes all of them; drop it after the processes in the namespaces are dead.
#[derive(Debug)]
pub struct Netns {
    plan: Plan,
    /// The rules appended and not yet deleted.
    rules: Vec<Rule>,
    /// The first failure to inject a fault, reported by the next heal.
    error: Option<String>,
}

impl Netns {
    /// Removes stale leftovers of dead runs, then builds this run's network. On failure,
    /// whatever was built is removed before the error returns.
    pub fn start(nodes_count: u64) -> anyhow::Result<Netns> {
        remove_stale()?;
        let run_id = std::process::id();
        let subnet = free_subnet(run_id)?;
        // The guard exists before the first command, so a failure part way tears down.
        let netns = Netns {
            plan: Plan::new(run_id, nodes_count, subnet),
            rules: Vec::new(),
            error: None,
        };
        for command in netns.plan.setup_commands() {
            run(&command)?;
        }
        // Check the kernel routes the subnet to the run's bridge, never out of the machine.
        let node = netns.plan.node_ip(1).to_string();
        let route = run(&strings(&["ip", "-4", "route", "get", &node]))?;
        let bridge = netns.plan.bridge();
        if !route.split_whitespace().any(|word| word == bridge) {
            bail!("{node} is not routed through {bridge}: {}", route.trim());
        }
        Ok(netns)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Node `node`'s RESP, HTTP and peer listen addresses.
    pub fn node_addresses(&self, node: u64) -> (SocketAddr, SocketAddr, SocketAddr) {
        let ip = self.plan.node_ip(node).into();
        (
            SocketAddr::new(ip, RESP_PORT),
            SocketAddr::new(ip, HTTP_PORT),
            SocketAddr::new(ip, PEER_PORT),
        )
    }

    /// Drops (appends the rules of) or passes (deletes them) link `from -> to`.
    pub fn set_mode(&mut self, from: u64, to: u64, mode: LinkMode) {
        for rule in self.plan.link_rules(from, to) {
            let active = self.rules.iter().position(|active| *active == rule);
            let result = match (mode, active) {
                (LinkMode::Dropped, None) => {
                    run(&rule.command("-A")).map(|_| self.rules.push(rule))
                }
                (LinkMode::Up, Some(index)) => {
                    run(&rule.command("-D")).map(|_| drop(self.rules.swap_remove(index)))
                }
                (LinkMode::Dropped, Some(_)) | (LinkMode::Up, None) => Ok(()),
            };
            self.latch(result);
        }
    }

    /// Closes every open connection of link `from -> to`, and checks none is left (the
    /// link's rules are in force by then, so no new one can open).
    pub fn reset(&mut self, from: u64, to: u64) {
        for command in self.plan.socket_commands(from, to, SS_KILL) {
            let result = run(&command).map(drop);
            self.latch(result);
        }
        for command in self.plan.socket_commands(from, to, SS_LIST_ESTABLISHED) {
            let result = run(&command).and_then(|open| match open.trim().is_empty() {
                true => Ok(()),
                false => bail!(
                    "`ss -K` left connections of link {from} -> {to} open (does the kernel \
                     have CONFIG_INET_DIAG_DESTROY?): {}",
                    open.trim()
                ),
            });
            self.latch(result);
        }
    }

    fn latch(&mut self, result: anyhow::Result<()>) {
        if let Err(error) = result {
            eprintln!("nemesis: {error:#}");
            self.error.get_or_insert_with(|| format!("{error:#}"));
        }
    }

    /// Deletes every partition rule; fails if any fault could not be injected or healed.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        // Bounded by the rules in force, each deleted once or latched as an error.
        while let Some(rule) = self.rules.pop() {
            let result = run(&rule.command("-D")).map(drop);
            self.latch(result);
        }
        match self.error.take() {
            Some(error) => bail!("a partition could not be applied or healed: {error}"),
            None => Ok(()),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for command in self.plan.teardown_commands() {
            let _ = run(&command);
        }
        let namespaces = run(&strings(&["ip", "netns", "list"])).unwrap_or_default();
        let links = run(&strings(&["ip", "-o", "link", "show"])).unwrap_or_default();
        let left: Vec<&str> = namespace_names(&namespaces)
            .into_iter()
            .filter(|name| namespace_owner(name) == Some(self.plan.run))
            .chain(
                link_names(&links)
                    .into_iter()
                    .filter(|name| link_owner(name) == Some(self.plan.run)),
            )
            .collect();
        if !left.is_empty() {
            eprintln!("nemesis: could not remove {}", left.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(commands: &[Vec<String>]) -> Vec<String> {
        commands.iter().map(|command| command.join(" ")).collect()
    }

    #[test]
    fn plan_names_and_addresses() {
        // Checks the names and addresses of a run: pid in every name, links within 15
        // characters at the largest pid, nodes at .1.., the root namespace at .254.
        let plan = Plan::new(4_194_304, 9, [10, 70, 3]);
        assert_eq!(plan.bridge(), "synod-br4194304");
        assert_eq!(plan.veth(9), "synod-4194304v9");
        assert_eq!(plan.namespace(2), "synod-4194304-n2");
        assert_eq!(plan.tag(), "synod-nemesis-4194304");
        assert_eq!(plan.node_ip(1), Ipv4Addr::new(10, 70, 3, 1));
        assert_eq!(plan.bridge_ip(), Ipv4Addr::new(10, 70, 3, 254));
        assert_eq!(
            plan.launcher(3),
            ["ip", "netns", "exec", "synod-4194304-n3"]
        );
    }

    #[test]
    fn setup_and_teardown_commands() {
        // Checks the exact commands that build and remove a two-node run's network.
        let plan = Plan::new(812, 2, [10, 67, 44]);
        assert_eq!(
            joined(&plan.setup_commands()),
            [
                "ip link add synod-br812 type bridge",
                "ip addr add 10.67.44.254/24 dev synod-br812",
                "ip link set synod-br812 up",
                "ip netns add synod-812-n1",
                "ip -n synod-812-n1 link set lo up",
                "ip link add synod-812v1 type veth peer name eth0 netns synod-812-n1",
                "ip link set synod-812v1 master synod-br812 up",
                "ip -n synod-812-n1 addr add 10.67.44.1/24 dev eth0",
                "ip -n synod-812-n1 link set eth0 up",
                "ip netns add synod-812-n2",
                "ip -n synod-812-n2 link set lo up",
                "ip link add synod-812v2 type veth peer name eth0 netns synod-812-n2",
                "ip link set synod-812v2 master synod-br812 up",
                "ip -n synod-812-n2 addr add 10.67.44.2/24 dev eth0",
                "ip -n synod-812-n2 link set eth0 up",
            ]
        );
        assert_eq!(
            joined(&plan.teardown_commands()),
            [
                "ip link del synod-812v1",
                "ip link del synod-812v2",
                "ip netns del synod-812-n1",
                "ip netns del synod-812-n2",
                "ip link del synod-br812",
            ]
        );
    }

    #[test]
    fn link_rules_and_reset_commands() {
        // Checks that dropping link 1 -> 3 is two tagged DROP rules in node 3's namespace
        // matching only node 1's connection to the peer port, and that a reset kills that
        // connection's sockets on both ends.
        let plan = Plan::new(812, 3, [10, 67, 44]);
        let rules = plan.link_rules(1, 3);
        let prefix = "ip netns exec synod-812-n3 iptables -w 5";
        let tail = "-m comment --comment synod-nemesis-812 -j DROP";
        assert_eq!(
            rules[0].command("-A").join(" "),
            format!("{prefix} -A INPUT -s 10.67.44.1 -p tcp --dport 7390 {tail}")
        );
        assert_eq!(
            rules[1].command("-A").join(" "),
            format!("{prefix} -A OUTPUT -d 10.67.44.1 -p tcp --sport 7390 {tail}")
        );
        assert_eq!(
            rules[1].command("-D").join(" "),
            format!("{prefix} -D OUTPUT -d 10.67.44.1 -p tcp --sport 7390 {tail}")
        );
        assert_eq!(
            joined(&plan.socket_commands(1, 3, SS_KILL)),
            [
                "ip netns exec synod-812-n1 ss -K -t dst 10.67.44.3 dport = :7390",
                "ip netns exec synod-812-n3 ss -K -t src 10.67.44.3 sport = :7390 \
                 dst 10.67.44.1",
            ]
        );
        assert_eq!(
            joined(&plan.socket_commands(1, 3, SS_LIST_ESTABLISHED))[0],
            "ip netns exec synod-812-n1 ss -t -H state established dst 10.67.44.3 \
             dport = :7390"
        );
    }

    #[test]
    fn subnet_candidates_avoid_what_is_in_use() {
        // Checks the candidate subnets stay in 10.64.0.0/10, differ per pid and attempt,
        // and that an overlapping address, route or gateway marks a candidate as used
        // while the default route and unrelated prefixes do not.
        assert_eq!(subnet_candidate(0, 0), [10, 64, 0]);
        assert_eq!(subnet_candidate(812, 0), [10, 67, 44]);
        assert_eq!(subnet_candidate(812, 1), [10, 83, 47]);
        assert_eq!(subnet_candidate(16_384, 0), [10, 64, 0]);
        for attempt in 0..SUBNET_ATTEMPTS_MAX {
            let [a, b, _] = subnet_candidate(4_194_304, attempt);
            assert!(a == 10 && (64..128).contains(&b));
        }
        let ours = [10, 67, 44];
        let routes = "default via 172.17.0.1 dev eth0\n172.17.0.0/16 dev eth0 scope link\n\
                      local 127.0.0.0/8 dev lo table local";
        assert!(!subnet_in_use(ours, routes));
        assert!(subnet_in_use(ours, "10.0.0.0/8 dev tun0"));
        assert!(subnet_in_use(ours, "10.67.44.128/25 dev eth1"));
        assert!(subnet_in_use(ours, "inet 10.67.44.9/32 scope global eth0"));
        assert!(subnet_in_use(ours, "default via 10.67.44.1 dev eth0"));
        assert!(!subnet_in_use(ours, "10.67.45.0/24 dev eth1"));
        assert!(!subnet_in_use(ours, "0.0.0.0/0 dev eth0"));
    }

    #[test]
    fn owners_of_leftover_names() {
        // Checks that only names of the run layout yield an owner pid, from `ip netns
        // list` and `ip -o link show` output.
        assert_eq!(namespace_owner("synod-812-n3"), Some(812));
        assert_eq!(namespace_owner("synod-812-n"), None);
        assert_eq!(namespace_owner("synod-x-n3"), None);
        assert_eq!(namespace_owner("other-812-n3"), None);
        assert_eq!(link_owner("synod-br812"), Some(812));
        assert_eq!(link_owner("synod-812v3"), Some(812));
        assert_eq!(link_owner("synod-brx"), None);
        assert_eq!(link_owner("synod-v3"), None);
        assert_eq!(link_owner("eth0"), None);
        let links = "1: lo: <LOOPBACK,UP> mtu 65536\n\
                     7: synod-812v1@if2: <BROADCAST> mtu 1500 master synod-br812\n\
                     9: synod-br812: <BROADCAST> mtu 1500";
        assert_eq!(link_names(links), ["lo", "synod-812v1", "synod-br812"]);
        let namespaces = "synod-812-n2 (id: 1)\nsynod-812-n1\n";
        assert_eq!(
            namespace_names(namespaces),
            ["synod-812-n2", "synod-812-n1"]
        );
    }
}
