//! `synod server` (one node of a deployment) and `synod up` (a local cluster of them).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use synod_server::ServerConfig;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The node's configuration file (TOML). Every field can also be set by an environment
    /// variable: SYNOD_NODE_ID, SYNOD_DATA_DIR, SYNOD_RAFT__ELECTION_TIMEOUT_MS, ...
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Where the nodes keep their data (kept across restarts) and logs.
    #[arg(long, default_value = "synod-data")]
    pub data_dir: PathBuf,
    /// Node i serves RESP on base+i, HTTP on base+100+i and peers on base+200+i.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// How many of the nodes vote from the start (default: all). The others run and are
    /// known to every node, and join when added as learners and promoted (POST /members).
    #[arg(long)]
    pub voters: Option<u64>,
}

/// A tokio runtime with `workers` threads beside the caller's (0: everything on the
/// caller's thread).
pub(crate) fn tokio_runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        0 => tokio::runtime::Builder::new_current_thread(),
        workers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

pub fn run_server(args: &ServerArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read the config file {}", args.config.display()))?;
    let config = ServerConfig::parse(&text, std::env::vars())
        .with_context(|| format!("in {}", args.config.display()))?;
    let runtime = tokio_runtime(config.worker_threads)?;
    runtime
        .block_on(synod_server::run_server(config, stop_signal()))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The addresses of node `id` of a local cluster.
fn addresses(base: u16, id: u64) -> anyhow::Result<(SocketAddr, SocketAddr, SocketAddr)> {
    let port = |offset: u64| -> anyhow::Result<SocketAddr> {
        let port = u64::from(base) + offset + id;
        let port = u16::try_from(port).context("--base-port leaves no room for the nodes")?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    };
    Ok((port(0)?, port(100)?, port(200)?))
}

/// Where one member of a cluster listens, as written into a node's config file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberAddresses {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) resp: SocketAddr,
    pub(crate) http: SocketAddr,
    /// Votes from the start; otherwise it joins when added as a learner and promoted.
    pub(crate) voter: bool,
}

/// The config file of node `id`: a comment line, the node's id and data directory, and one
/// `[[members]]` table per member. `synod up` and `synod nemesis` both write theirs with it.
pub(crate) fn config_text(
    comment: &str,
    id: u64,
    data: &Path,
    members: &[MemberAddresses],
) -> anyhow::Result<String> {
    let mut text = String::new();
    writeln!(text, "# {comment}")?;
    writeln!(text, "node_id = {id}")?;
    writeln!(text, "data_dir = {:?}", data.display().to_string())?;
    for member in members {
        writeln!(text, "\n[[members]]\nid = {}", member.id)?;
        writeln!(
            text,
            "peer = \"{}\"\nresp = \"{}\"\nhttp = \"{}\"",
            member.peer, member.resp, member.http
        )?;
        if !member.voter {
            writeln!(text, "voter = false")?;
        }
    }
    Ok(text)
}

/// The config file of node `id` of a local cluster.
fn local_config(args: &UpArgs, id: u64, dir: &Path) -> anyhow::Result<String> {
    let mut members = Vec::new();
    for member in 1..=args.nodes {
        let (resp, http, peer) = addresses(args.base_port, member)?;
        members.push(MemberAddresses {
            id: member,
            peer,
            resp,
            http,
            voter: member <= args.voters.unwrap_or(args.nodes),
        });
    }
    config_text(
        "Written by `synod up`; edit the flags of `synod up` instead.",
        id,
        &dir.join("data"),
        &members,
    )
}

/// A command that runs `exe` behind `launcher` (a program and its arguments that run the
/// command after them, such as `taskset -c 0`); empty: `exe` itself.
pub(crate) fn command_through(launcher: &[impl AsRef<std::ffi::OsStr>], exe: &Path) -> Command {
    match launcher.split_first() {
        Some((program, arguments)) => {
            let mut command = Command::new(program);
            command.args(arguments).arg(exe);
            command
        }
        None => Command::new(exe),
    }
}

/// Starts `synod server --config <config_path>` with its output appended to `log_path`,
/// behind `launcher` when it is not empty (`ip netns exec NS` execs the server, so the
/// child's pid is the server's).
pub(crate) fn spawn_server(
    launcher: &[String],
    exe: &Path,
    config_path: &Path,
    log_path: &Path,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut command = command_through(launcher, exe);
    command
        .arg("server")
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| match launcher.is_empty() {
            true => format!(
                "cannot start synod server --config {}",
                config_path.display()
            ),
            false => format!("cannot start {} synod server", launcher.join(" ")),
        })
}

/// Whether something answers PING on `address`.
pub(crate) fn pings(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

struct NodeProcess {
    id: u64,
    child: Child,
}

/// Asks a node to stop (SIGTERM), waits for it, and kills it if it does not stop in time.
fn stop_node(node: &mut NodeProcess, timeout: Duration) {
    let pid = node.child.id().to_string();
    let asked = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .is_ok_and(|status| status.success());
    let deadline = Instant::now() + timeout;
    while asked && Instant::now() < deadline {
        if let Ok(Some(_)) = node.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = node.child.kill();
    let _ = node.child.wait();
}

pub fn run_up(args: &UpArgs) -> anyhow::Result<ExitCode> {
    if !(1..=9).contains(&args.nodes) {
        bail!("--nodes must be between 1 and 9 (got {})", args.nodes);
    }
    if let Some(voters) = args.voters
        && !(1..=args.nodes).contains(&voters)
    {
        bail!(
            "--voters must be between 1 and --nodes ({}), got {voters}",
            args.nodes
        );
    }
    let exe = std::env::current_exe().context("cannot find the synod executable")?;
    let mut nodes = Vec::new();
    for id in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let config_path = dir.join("synod.toml");
        std::fs::write(&config_path, local_config(args, id, &dir)?)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let child = spawn_server(&[], &exe, &config_path, &dir.join("synod.log"))
            .with_context(|| format!("cannot start node {id}"))?;
        std::fs::write(dir.join("synod.pid"), format!("{}\n", child.id()))?;
        nodes.push(NodeProcess { id, child });
    }
    let result = tokio_runtime(1)?.block_on(supervise(args, &mut nodes));
    eprintln!("stopping the cluster...");
    for node in &mut nodes {
        stop_node(node, Duration::from_secs(10));
    }
    eprintln!("stopped; data kept in {}", args.data_dir.display());
    result
}

async fn supervise(args: &UpArgs, nodes: &mut [NodeProcess]) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in 1..=args.nodes {
        let (resp, _, _) = addresses(args.base_port, id)?;
        while !pings(resp) {
            if Instant::now() > deadline {
                bail!(
                    "node {id} did not answer on {resp} within 30 s: see {}",
                    args.data_dir.join(format!("node-{id}/synod.log")).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (first_resp, first_http, _) = addresses(args.base_port, 1)?;
    println!("synod: {} nodes running", args.nodes);
    for id in 1..=args.nodes {
        let (resp, http, peer) = addresses(args.base_port, id)?;
        println!("  node {id}: redis://{resp}  http://{http}  (peers {peer})");
    }
    println!(
        "try:       redis-cli -p {} set hello world",
        first_resp.port()
    );
    println!("dashboard: http://{first_http}/");
    println!("data:      {}", args.data_dir.display());
    println!("Ctrl-C stops the cluster.");
    let stop = async {
        let seconds = args.seconds.unwrap_or(u64::MAX / 4);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            () = stop_signal() => {}
        }
    };
    tokio::pin!(stop);
    let mut reported = vec![false; nodes.len()];
    loop {
        tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (node, reported) in nodes.iter_mut().zip(reported.iter_mut()) {
            if !*reported && let Ok(Some(status)) = node.child.try_wait() {
                *reported = true;
                eprintln!("node {} exited ({status}); the others go on", node.id);
            }
        }
    }
}
