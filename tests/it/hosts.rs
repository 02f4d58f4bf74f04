//! Several hosts, for real: network namespaces made by `scripts/netns-lab.sh`, each with its
//! own address and an sshd, driven from the lab's hub namespace over ssh. Skipped, with a
//! message, where the tests cannot create namespaces (not root, no `ip netns`, no sshd).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::{RAFTBENCH, csv_named_rows, csv_rows, interrupt, manifest, read_json};

/// Why the lab cannot run here, if it cannot.
fn lab_unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    let netns = Command::new("ip").args(["netns", "list"]).output();
    if !netns.is_ok_and(|o| o.status.success()) {
        return Some("`ip netns` is not available".into());
    }
    if !Path::new("/usr/sbin/sshd").exists() {
        return Some("no /usr/sbin/sshd (apt-get install openssh-server)".into());
    }
    None
}

/// A lab of `n` hosts (the first `nodes` of them node hosts), removed when dropped.
struct Lab {
    prefix: String,
    dir: PathBuf,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    fn script(prefix: &str, dir: &Path, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(manifest("scripts/netns-lab.sh"))
            .args(args)
            .env("LAB_PREFIX", prefix)
            .env("LAB_DIR", dir)
            .env("RAFTBENCH_BIN", RAFTBENCH)
            .output()
            .unwrap()
    }

    /// `None` (and a message) where namespaces cannot be made.
    fn up(n: usize, nodes: usize) -> Option<Lab> {
        if let Some(why) = lab_unavailable() {
            eprintln!("skipping the multi-host lab test: {why}");
            return None;
        }
        // Each test has a lab of its own: namespace and bridge names are unique per test
        // (addresses may repeat: each lab's namespaces see only each other).
        let prefix = format!(
            "rbt{}x{}",
            std::process::id() % 100_000,
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&prefix);
        let o = Self::script(&prefix, &dir, &["up", &n.to_string(), &nodes.to_string()]);
        // The guard first: a failed `up` is cleaned up too.
        let lab = Lab { prefix, dir };
        assert!(
            o.status.success(),
            "lab up: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Some(lab)
    }

    fn hosts_toml(&self) -> PathBuf {
        self.dir.join("hosts.toml")
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// `raftbench ARGS` in the hub namespace, where the coordinator runs.
    fn raftbench(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hub(), RAFTBENCH]);
        c
    }

    /// The processes left in host `i`'s namespace, other than its sshd.
    fn processes_on(&self, i: usize) -> Vec<String> {
        let o = Command::new("ip")
            .args(["netns", "pids", &format!("{}-h{i}", self.prefix)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| !c.contains("sshd"))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let o = Self::script(&self.prefix, &self.dir, &["down"]);
        if !o.status.success() {
            eprintln!("lab down: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

/// `cluster up --cluster` running in the hub, stopped (SIGINT) when dropped.
struct HostsUp {
    child: Child,
    out: PathBuf,
}

impl HostsUp {
    fn start(lab: &Lab) -> Result<HostsUp, String> {
        let out = lab.dir.join("up.out");
        let child = lab
            .raftbench()
            .args(["cluster", "up", "--cluster"])
            .arg(lab.hosts_toml())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(lab.dir.join("up.err")).unwrap())
            .spawn()
            .unwrap();
        let mut up = HostsUp { child, out };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if std::fs::read_to_string(&up.out)
                .unwrap_or_default()
                .contains("Ctrl-C")
            {
                return Ok(up);
            }
            if let Some(status) = up.child.try_wait().unwrap() {
                return Err(format!(
                    "cluster up exited ({status}): {}{}",
                    std::fs::read_to_string(&up.out).unwrap_or_default(),
                    std::fs::read_to_string(lab.dir.join("up.err")).unwrap_or_default()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "cluster up did not start in 90 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stop(mut self) {
        interrupt(&self.child);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "cluster up: {status}: {}", self.output());
    }
}

impl Drop for HostsUp {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            interrupt(&self.child);
            let _ = self.child.wait();
        }
    }
}

/// A short failover: the leader killed and restarted over ssh under load, then verified.
const FAILOVER: &str = r#"
name = "lab-failover"
seed = 7
[cluster]
nodes = 3
[data]
keys = 2000
value_size = 128
[[phase]]
name = "load"
ops = 2000
concurrency = 16
mix = { put = 1.0 }
key_distribution = { dist = "sequential" }
[[phase]]
name = "run"
duration = "12s"
concurrency = 16
rate = 300
timeout = "2s"
mix = { put = 0.5, get = 0.5 }
  [[phase.event]]
  at = "3s"
  action = "kill"
  target = "leader"
  [[phase.event]]
  at = "7s"
  action = "restart"
  target = "killed"
[[phase]]
name = "verify"
verify = true
"#;

/// Nodes started on three hosts over ssh; a run from the hub kills and restarts the leader
/// through ssh, and nothing acknowledged is lost; stopping `cluster up` stops every node.
#[test]
fn nodes_on_three_hosts_survive_a_leader_kill_driven_over_ssh() {
    let Some(lab) = Lab::up(3, 3) else { return };
    let up = HostsUp::start(&lab).unwrap();
    let started = up.output();
    for h in ["h1", "h2", "h3"] {
        assert!(
            started.contains(&format!("host {h}: raftbench ")) && started.contains("clock offset"),
            "{started}"
        );
    }
    assert!(started.contains("(leader)"), "{started}");

    let wl = lab.dir.join("failover.toml");
    std::fs::write(&wl, FAILOVER).unwrap();
    let out = lab.dir.join("results");
    let o = lab
        .raftbench()
        .arg("run")
        .arg(&wl)
        .arg("--cluster")
        .arg(lab.hosts_toml())
        .arg("--quiet")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains(" 0 lost, 0 stale"), "{stdout}");
    let recovery = csv_rows(&out.join("recovery.csv"));
    for metric in ["leader_elected_ms", "caught_up_ms"] {
        assert!(
            recovery.iter().any(|r| r[3] == *metric),
            "no {metric}: {recovery:?}"
        );
    }
    // The kill and the restart went over ssh, to the host the leader was on.
    let log = std::fs::read_to_string(out.join("cluster/control.log")).unwrap();
    assert!(
        log.contains(" kill: ") && log.contains(" start: ") && log.contains("BatchMode=yes"),
        "{log}"
    );
    // run.json keeps the identity's path, never the key or the cluster secret; the hosts
    // got only what nodes read.
    let run = std::fs::read_to_string(out.join("run.json")).unwrap();
    let key = std::fs::read_to_string(lab.dir.join("id_ed25519")).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    let secret = std::fs::read_to_string(lab.dir.join("cluster.secret")).unwrap();
    assert!(run.contains("id_ed25519") && !run.contains(key_body) && !run.contains(secret.trim()));
    let _ = read_json(&out.join("run.json"));
    let on_host = std::fs::read_to_string(lab.dir.join("h1/cluster.toml")).unwrap();
    assert!(
        !on_host.contains("[[host]]") && !on_host.contains("ssh"),
        "{on_host}"
    );

    up.stop();
    std::thread::sleep(Duration::from_millis(300));
    for i in 1..=3 {
        let left = lab.processes_on(i);
        assert!(left.is_empty(), "host h{i} still runs {left:?}");
    }
}

/// A host that cannot be reached is named before anything starts anywhere: by
/// `cluster up`, and by a coordinated `run` before any load.
#[test]
fn an_unreachable_host_is_named_before_anything_starts() {
    let Some(lab) = Lab::up(5, 3) else { return };
    // h2's sshd goes away: its address answers, but nothing listens on port 22.
    let pid = std::fs::read_to_string(lab.dir.join("h2/sshd.pid")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.trim().parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t = Instant::now();
    let o = lab
        .raftbench()
        .args(["cluster", "up", "--cluster"])
        .arg(lab.hosts_toml())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("host h2") && stderr.contains("ssh"),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // Nothing was started on the reachable hosts.
    for i in [1, 3] {
        let left = lab.processes_on(i);
        assert!(left.is_empty(), "host h{i} runs {left:?}");
    }
    // The coordinator checks the generator hosts and the node hosts before any load.
    let wl = lab.dir.join("split.toml");
    std::fs::write(&wl, SPLIT_FAULTS).unwrap();
    let o = lab
        .raftbench()
        .arg("run")
        .arg(&wl)
        .arg("--cluster")
        .arg(lab.hosts_toml())
        .arg("--out")
        .arg(lab.dir.join("never"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("host h2") && stderr.contains("nothing was started"),
        "{stderr}"
    );
    assert!(!lab.dir.join("h4/runs").exists() && !lab.dir.join("h5/runs").exists());
}

/// A split run for the coordinator: a one-way partition of the leader and a slow link to a
/// follower while two generators write, then healed and verified.
const SPLIT_FAULTS: &str = r#"
name = "lab-split"
seed = 11
[data]
keys = 2000
value_size = 128
[[phase]]
name = "load"
ops = 2000
concurrency = 16
mix = { put = 1.0 }
key_distribution = { dist = "sequential" }
[[phase]]
name = "run"
duration = "12s"
concurrency = 16
rate = 400
timeout = "3s"
mix = { put = 0.7, get = 0.3 }
  [[phase.event]]
  at = "3s"
  action = "partition"
  target = "leader"
  direction = "out"
  [[phase.event]]
  at = "4s"
  action = "link-slow"
  target = "follower"
  delay = "30ms"
  jitter = "10ms"
  loss = 0.02
  [[phase.event]]
  at = "8s"
  action = "heal"
  target = "all"
[[phase]]
name = "verify"
verify = true
"#;

/// `summary.csv`'s counts per (phase, op, outcome, latency kind), of corrected latency
/// (merged results keep service time for successes only).
fn counts(dir: &Path) -> std::collections::BTreeMap<(String, String, String, String), u64> {
    let mut m = std::collections::BTreeMap::new();
    for r in csv_named_rows(&dir.join("summary.csv")) {
        if r["latency_kind"] != "corrected" {
            continue;
        }
        *m.entry((
            r["phase"].clone(),
            r["op"].clone(),
            r["outcome"].clone(),
            r["latency_kind"].clone(),
        ))
        .or_default() += r["count"].parse::<u64>().unwrap();
    }
    m
}

/// One command from the hub: two generators on two hosts started over ssh at one moment,
/// the coordinator injecting a one-way partition of the leader and a slow link; their
/// results fetched and merged exactly (counts and histograms add up), nothing lost.
#[test]
fn two_generators_on_two_hosts_are_coordinated_and_merged_exactly() {
    let Some(lab) = Lab::up(5, 3) else { return };
    let up = HostsUp::start(&lab).unwrap();
    let wl = lab.dir.join("split.toml");
    std::fs::write(&wl, SPLIT_FAULTS).unwrap();
    let out = lab.dir.join("results");
    let o = lab
        .raftbench()
        .arg("run")
        .arg(&wl)
        .arg("--cluster")
        .arg(lab.hosts_toml())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(" 0 lost, 0 stale"), "{stdout}");
    // Progress streamed back, named by generator and host.
    for g in ["generator 1 on host h4", "generator 2 on host h5"] {
        assert!(stderr.contains(&format!("[{g}] phase")), "{stderr}");
    }

    // Each generator's own result came back, and the merged one is their sum.
    let gens = [out.join("generators/g1-h4"), out.join("generators/g2-h5")];
    let mut sum = std::collections::BTreeMap::new();
    for (i, g) in gens.iter().enumerate() {
        let run = read_json(&g.join("run.json"));
        assert_eq!(run["generator"]["id"], i as u64 + 1);
        assert_eq!(run["generator"]["of"], 2);
        // Only the coordinator injected events.
        assert!(csv_rows(&g.join("events.csv")).is_empty());
        for (k, v) in counts(g) {
            *sum.entry(k).or_insert(0) += v;
        }
    }
    assert_eq!(counts(&out), sum, "merged counts are the generators' sum");
    let run = read_json(&out.join("run.json"));
    let acked: u64 = gens
        .iter()
        .map(|g| {
            read_json(&g.join("run.json"))["verify"]["acknowledged"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(run["verify"]["acknowledged"].as_u64(), Some(acked));
    assert!(acked > 1000, "{acked}");
    assert_eq!(run["verify"]["lost"], 0);

    // The coordinator's events, with recovery measured across both generators.
    let events = csv_rows(&out.join("events.csv"));
    let actions: Vec<&str> = events.iter().map(|e| &e[2]).collect();
    assert_eq!(actions, ["partition", "linkslow", "heal"], "{events:?}");
    let recovery = csv_rows(&out.join("recovery.csv"));
    for metric in ["leader_elected_ms", "writes_resumed_ms"] {
        assert!(
            recovery
                .iter()
                .any(|r| &r[1] == "partition" && &r[3] == metric),
            "no {metric}: {recovery:?}"
        );
    }
    // Every host recorded, with its roles and clock.
    let hosts = run["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 5, "{hosts:?}");
    let h5 = hosts.iter().find(|h| h["host"] == "h5").unwrap();
    assert_eq!(h5["roles"][0], "generator 2");
    assert!(h5["clock_error_ms"].as_f64().unwrap() < 100.0);
    // The report was drawn for the merged run.
    assert!(out.join("report.html").exists());
    for i in [4, 5] {
        let left = lab.processes_on(i);
        assert!(left.is_empty(), "host h{i} still runs {left:?}");
    }
    up.stop();
}

/// A generator killed mid-run aborts the whole run: the error names its host, the other
/// generator is stopped, and nothing is left running on the generator hosts.
#[test]
fn a_killed_generator_aborts_the_run_naming_its_host() {
    let Some(lab) = Lab::up(5, 3) else { return };
    let up = HostsUp::start(&lab).unwrap();
    let wl = lab.dir.join("long.toml");
    std::fs::write(
        &wl,
        r#"
name = "lab-long"
[data]
keys = 1000
[[phase]]
name = "run"
duration = "60s"
concurrency = 4
rate = 100
mix = { put = 1.0 }
  # Not reached: the coordinator is waiting to inject it when the generator dies.
  [[phase.event]]
  at = "50s"
  action = "partition"
  target = "leader"
"#,
    )
    .unwrap();
    let err = lab.dir.join("abort.err");
    let mut run = lab
        .raftbench()
        .arg("run")
        .arg(&wl)
        .arg("--cluster")
        .arg(lab.hosts_toml())
        .arg("--out")
        .arg(lab.dir.join("aborted"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // Wait for generator 2's process on h5, then kill it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let o = Command::new("ip")
            .args(["netns", "pids", &format!("{}-h5", lab.prefix)])
            .output()
            .unwrap();
        let found = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("--coordinated") && !c.starts_with("sh")
                })
            })
            .map(|p| p.parse::<i32>().unwrap());
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no generator on h5: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(5));
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the run went on without generator 2"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("generator 2 on host h5")
            && stderr.contains("aborted")
            && stderr.contains("at phase-0"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The other generator stopped too, within seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.processes_on(4).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left = lab.processes_on(4);
    assert!(left.is_empty(), "host h4 still runs {left:?}");
    up.stop();
}
