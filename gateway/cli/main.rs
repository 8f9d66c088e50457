//! `sekisho`: the gateway binary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use sekisho_assembly::{Assembly, GatewayConfig};
use sekisho_proxy::{ca, Config};

mod notify;
mod probe;
mod rules;
mod sandbox;
mod scan;
mod service;

/// mimalloc instead of the system allocator: the engines allocate many small, short-lived
/// buffers per request, and glibc's malloc (with its consolidation passes) cost the WAF a fifth
/// of its time under load (`benches/results/README.md`, session 18).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What Sekisho is, in one sentence (`sekisho`, `sekisho --help` and the README say the same).
const ABOUT: &str = "Sekisho security gateway: TLS-inspecting forward proxy and client-certificate reverse proxy with a pluggable inspection pipeline";

/// The bundled default config, used when `--config` is not given.
const DEFAULT_CONFIG: &str = "sekisho.toml";

#[derive(Parser)]
#[command(
    name = "sekisho",
    version,
    about = ABOUT,
    long_about = concat!(
        "Sekisho security gateway: TLS-inspecting forward proxy and client-certificate reverse proxy with a pluggable inspection pipeline.",
        "\n\nRelative paths in the config are resolved from the config file's folder, whatever the \
current directory. Without --config, ./sekisho.toml (the bundled default) is used."
    )
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "SEKISHO_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `sekisho_proxy=debug`; RUST_LOG also works.
    #[arg(long, global = true, env = "SEKISHO_LOG")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Creates the CA files named in [tls] if neither exists, and says so.
    /// SIGHUP reloads the policy and the CA (a failing reload keeps the running ones and
    /// raises a reload-failed event); SIGINT/SIGTERM stop.
    ///
    /// SIGTERM drains: the listeners close, /readyz answers 503, connections in flight get
    /// [limits] drain_timeout_secs to finish, then the events and spools are flushed. Under a
    /// systemd Type=notify unit it reports readiness, reloads and stopping (sd_notify) and
    /// pings the watchdog. The environment may name the config (SEKISHO_CONFIG) and set any
    /// key: SEKISHO__<TABLE>__<KEY>=value (e.g. SEKISHO__AV__CACHE_DIR=/var/cache/sekisho/av),
    /// or by short names SEKISHO_NODE_NAME, SEKISHO_METRICS_ADDR, SEKISHO_CA_CERT,
    /// SEKISHO_CA_KEY, SEKISHO_EVENTS_FILE, SEKISHO_COMM_LOG, SEKISHO_SPOOL_DIR.
    Run {
        /// Config file (default: ./sekisho.toml).
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and everything it names, without starting. Prints each listener's
    /// stages with their decision deadlines for held bodies (resolve_timeout_secs).
    CheckConfig {
        /// Config file (default: ./sekisho.toml).
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Ask a health endpoint (`/healthz`, `/readyz` of [metrics] addr) and exit 0 on a 200
    /// answer, 1 otherwise, printing its body: a container HEALTHCHECK without curl.
    Probe {
        /// The URL (http only), e.g. http://127.0.0.1:9090/readyz.
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Scan files and folders offline with the AV engine and limits of the config's [av] table.
    /// Containers are recognised by content, not name (zip, split zip segments, tar, gzip,
    /// bzip2, xz, lzma, zstd, 7z, RAR, cab, cpio, ISO 9660, mail/mbox, MIME, uuencode, BinHex,
    /// TNEF, OLE2 with VBA, PowerPoint objects, RTF objects, PDF, HTML, OneNote, SZDD, SIS, ARJ,
    /// LHA/LZH, ALZip, CHM, NSIS and InstallShield installers, compiled AutoIt scripts, programs
    /// packed by UPX, Upack, MEW, Petite, PESpin, yC, WWPack32 or ASPack, archives and programs
    /// embedded in executables and other binaries) and opened; `where` names the path inside
    /// them.
    /// Prints `PATH: OK` or `PATH: NAME FOUND (where)` per file; exit status 1 when anything is
    /// found (limits, encrypted and corrupt containers count when [av] on_limit = "block"),
    /// 2 on errors, 0 when clean. --json adds the executables met (PE/ELF/Mach-O, packer).
    /// Files the signatures pass are also shown to the [[av.icap]] servers (ICAP RESPMOD or
    /// REQMOD); their threats print like ours, a server that fails closed makes an ERROR.
    Scan {
        /// Config file (default: ./sekisho.toml); only its [av] table is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object per file instead of text.
        #[arg(long)]
        json: bool,
        /// Files or folders (recursed).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// IPS rule files (Suricata syntax) named by the config's [ips] table.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Gateway CA management.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// A small log collector for pilots and tests: receives syslog over TCP and TLS (RFC 5425;
    /// octet-counted or newline-framed) and HTTP(S) JSON batches (Splunk HEC envelopes) and
    /// appends them to OUT/syslog.log and OUT/http.log, one message or event per line. Prints
    /// `listening <kind> <addr>` per socket; SIGINT/SIGTERM stop.
    Collector {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Syslog over TCP on ADDR (repeatable), e.g. 127.0.0.1:5514.
        #[arg(long, value_name = "ADDR")]
        syslog_tcp: Vec<std::net::SocketAddr>,
        /// Syslog over TLS on ADDR (repeatable); needs --cert and --key.
        #[arg(long, value_name = "ADDR")]
        syslog_tls: Vec<std::net::SocketAddr>,
        /// HTTP batches on ADDR (repeatable); any path, POST.
        #[arg(long, value_name = "ADDR")]
        http: Vec<std::net::SocketAddr>,
        /// HTTPS batches on ADDR (repeatable); needs --cert and --key.
        #[arg(long, value_name = "ADDR")]
        https: Vec<std::net::SocketAddr>,
        /// Server certificate chain (PEM) for TLS listeners.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Require client certificates chaining to this PEM bundle on TLS listeners.
        #[arg(long)]
        client_ca: Option<PathBuf>,
        /// Require `Authorization: Splunk TOKEN` on HTTP batches.
        #[arg(long)]
        token: Option<String>,
    },
    /// The sandbox: run a file on this host, isolated and traced, and score what it does.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Log file tools.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Detonate FILE once and print its report (JSON): verdict (malicious from score 7,
    /// suspicious from 4, clean, or not_detonated for types the sandbox does not run), score
    /// 0-10, the behaviour signatures hit with evidence, the process tree, files dropped
    /// (SHA-256, entropy), network and DNS attempts, and syscall counts. ELF programs and sh,
    /// bash, python and perl scripts (by content) run under bubblewrap (pid, mount, ipc, uts
    /// and network namespaces; read-only root; a writable scratch folder), with a
    /// make-believe network (every name resolves, every address reaches a sinkhole that
    /// records what is sent: `connections`), Landlock and a seccomp filter (refused calls are
    /// named), as nobody without capabilities, under rlimits and a deadline, traced by
    /// strace. Needs bwrap, strace, setpriv, prlimit and ip (Debian: bubblewrap, strace,
    /// util-linux, iproute2).
    /// Exit status 1 when suspicious or malicious, 2 on errors, 0 otherwise.
    Run {
        /// Behaviour rule files or folders of *.toml (default: rules/sandbox).
        #[arg(long, value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// Wall-clock deadline in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Where task folders are made (default: the system's temporary folder); each is
        /// removed after its run unless --keep.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Keep the task folder (scratch files and the raw strace output) and print its path
        /// on stderr.
        #[arg(long)]
        keep: bool,
        /// The file.
        file: PathBuf,
    },
    /// The sandbox worker: an HTTP API (POST /tasks with a file as the body → task id, or the
    /// cached report; GET /tasks/ID → status and report; GET /healthz; GET /metrics), a
    /// bounded queue feeding `slots` detonations at a time, and a verdict cache by SHA-256 and
    /// rule version (malicious 30 days, other verdicts 24 hours). Reads the [sandbox] table of
    /// FILE (listen, rules, slots, queue, timeout_secs, max_file_bytes, work_dir,
    /// cache_entries, cache_bytes, malicious_ttl_hours, clean_ttl_hours, tasks_kept); prints
    /// `listening ADDR`; SIGHUP reads the behaviour rules again (a set with an error is
    /// refused and the rules in use stay); SIGINT/SIGTERM stop.
    Serve {
        /// Config file holding a [sandbox] table.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Internal: the sandbox's first process (the make-believe network, the sample's
    /// confinement), run inside the sandbox by `run` and `serve`.
    #[command(hide = true)]
    Init {
        /// The confined command.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Check the hash chain of files written by an [[mss.sink]] of kind "file". Give a series
    /// of rotated files oldest first (then each must continue the one before it). Prints
    /// `FILE: ok (N lines, last HASH)` or `FILE:LINE: chain broken: WHY`; exit status 1 when a
    /// chain is broken, 0 when all verify.
    Verify {
        /// The key file, for chains written with [mss] keyed_chain = true.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Compile every rule file of [ips] and [waf] and report per file: rules loaded, skipped
    /// (each skipped SID with the unsupported keyword) and broken (file:line, SID or rule,
    /// reason); for [waf] also the directives that have no effect in this engine; and the
    /// sandbox's behaviour signatures in rules/sandbox beside the config (signatures per file,
    /// or each error with file and line). Exit status 1 when a rule has an error, 0 otherwise.
    Check {
        /// Config file (default: ./sekisho.toml); only its [ips] and [waf] tables are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Judge URLs with the [urlfilter] lists and policies, as the gateway would: prints
    /// `canonical: <URL>`, every matching entry (category or list, kind, entry, file, the
    /// policy's action for it), the host-level decision made before decryption (CONNECT/SNI),
    /// whether the host would be spliced, and `action: <allow|alert|warn|block>`.
    TestUrl {
        /// Config file (default: ./sekisho.toml); only its [urlfilter] table is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The client address choosing the policy (default 127.0.0.1).
        #[arg(long, default_value = "127.0.0.1")]
        client: std::net::IpAddr,
        /// The listener name choosing the policy (default: the first listener's name).
        #[arg(long)]
        listener: Option<String>,
        /// Use this policy instead of choosing one by client and listener.
        #[arg(long)]
        policy: Option<String>,
        /// URLs to judge (`host/path` without a scheme means http).
        #[arg(required = true)]
        urls: Vec<String>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create an ECDSA P-256 CA: DIR/ca.crt and DIR/ca.key (mode 0600). Refuses to overwrite.
    Init {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Sekisho Gateway CA")]
        name: String,
    },
    /// Issue a facility's client certificate for pilots: DIR/client.crt (leaf + CA) and
    /// DIR/client.key (mode 0600), signed by the CA in --ca. The facility ID goes into the
    /// subject's OU and a SAN URI urn:sekisho:facility:ID.
    IssueClient {
        /// The CA folder (ca.crt, ca.key), e.g. from `sekisho ca init`.
        #[arg(long)]
        ca: PathBuf,
        /// The facility ID (1-64 printable ASCII characters).
        #[arg(long)]
        facility: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The subject's common name (default: the facility ID).
        #[arg(long)]
        name: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Start of validity, RFC 3339 (for testing refusals of not-yet-valid certificates).
        #[arg(long)]
        not_before: Option<String>,
        /// End of validity, RFC 3339 (for testing refusals of expired certificates).
        #[arg(long)]
        not_after: Option<String>,
        /// An hcRole (ISO 17090) to carry, as HPKI certificates do, e.g. "Medical Doctor"
        /// (repeatable; read by role_id = "hpki:role").
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The coding scheme OID of --role (default HPKI's 1.2.392.100495.1.6.1.1).
        #[arg(long)]
        role_scheme: Option<String>,
        /// A certificate policy OID to assert (repeatable; checked by client_policies).
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Issue a signature certificate (key usage nonRepudiation only, as HPKI's signing
        /// certificates): TLS client authentication refuses it.
        #[arg(long)]
        signature_only: bool,
        /// A CRL distribution point URL to name (repeatable; fetched by crl_refresh).
        #[arg(long = "crl-url")]
        crl_urls: Vec<String>,
    },
    /// Issue a server certificate for a reverse listener (`cert`/`key` or `certificates`):
    /// DIR/server.crt (leaf + CA) and DIR/server.key (mode 0600), signed by the CA in --ca,
    /// for the DNS names and addresses given with --name (the first is the common name).
    IssueServer {
        /// The CA folder (ca.crt, ca.key), e.g. from `sekisho ca init`.
        #[arg(long)]
        ca: PathBuf,
        /// A DNS name or IP address the certificate is for (repeatable).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days (at most 397).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Write a CRL (PEM) signed by the CA in --ca that revokes the given certificates.
    Crl {
        /// The CA folder (ca.crt, ca.key).
        #[arg(long)]
        ca: PathBuf,
        /// Certificates (PEM) to revoke; none makes an empty CRL.
        #[arg(long)]
        revoke: Vec<PathBuf>,
        /// A serial number (hex) to revoke, for certificates whose file you do not have
        /// (repeatable).
        #[arg(long = "revoke-serial")]
        revoke_serials: Vec<String>,
        /// A file of serial numbers (hex) to revoke, one per line (`#` comments).
        #[arg(long)]
        serials_file: Option<PathBuf>,
        /// The CRL's nextUpdate, RFC 3339, over --days (a past time makes an expired CRL, for
        /// testing refusals).
        #[arg(long)]
        next_update: Option<String>,
        /// Days until the CRL's next update.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// The CRL file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn rfc3339(what: &str, v: Option<&str>) -> anyhow::Result<Option<time::OffsetDateTime>> {
    v.map(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("{what} {s:?}: not an RFC 3339 time"))
    })
    .transpose()
}

fn init_tracing(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Colour only on a terminal: files and pipes get plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn config_path(p: Option<PathBuf>) -> PathBuf {
    p.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Reads and checks the whole config file with every engine's table.
fn load(path: &Path) -> anyhow::Result<(Assembly, GatewayConfig)> {
    for var in sekisho_assembly::env::unknown(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!(variable = %var, "not a setting sekisho reads from the environment: ignored");
    }
    let assembly = Assembly::new()?;
    let cfg = assembly.load(path)?;
    Ok((assembly, cfg))
}

/// A process status as this process's exit status.
fn status(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, cli.log_level.as_deref());
    match real_main(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sekisho: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run { config } => run_command(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Probe { url, timeout } => probe::probe(&url, timeout),
        Command::Scan {
            config,
            json,
            paths,
        } => scan_command(config, json, &paths),
        Command::Rules { command } => rules_command(command),
        Command::Ca { command } => ca_command(command),
        Command::Sandbox {
            command:
                SandboxCommand::Run {
                    rules,
                    timeout,
                    work_dir,
                    keep,
                    file,
                },
        } => sandbox::run(&rules, timeout, work_dir, keep, &file),
        Command::Sandbox {
            command: SandboxCommand::Serve { config },
        } => sandbox::serve(&config),
        Command::Sandbox {
            command: SandboxCommand::Init { command },
        } => Ok(status(sekisho_sandbox::inside::init(&command))),
        Command::Logs {
            command: LogsCommand::Verify { key, files },
        } => verify_logs(key, &files),
        Command::Collector {
            out,
            syslog_tcp,
            syslog_tls,
            http,
            https,
            cert,
            key,
            client_ca,
            token,
        } => collector(sekisho_mss::collector::CollectorConfig {
            out,
            syslog_tcp,
            syslog_tls,
            http,
            https,
            cert,
            key,
            client_ca,
            token,
        }),
    }
}

/// `ca init`, `ca issue-client`, `ca crl`.
fn ca_command(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init { out, name } => {
            let (c, k) = ca::init_ca(&out, &name)?;
            println!("created {} and {} (mode 0600)", c.display(), k.display());
            println!(
                "as the gateway CA ([tls] ca_cert/ca_key): install {} in the clients' trust stores",
                c.display()
            );
            println!(
                "as a facility CA (a reverse listener's client_ca): keep the key offline; issue with `sekisho ca issue-client --ca {}`",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::IssueServer {
            ca: ca_dir,
            names,
            out,
            days,
        } => {
            let (c, k) = ca::issue_server(&ca_dir, &names, days, &out)?;
            println!(
                "issued {} and {} (mode 0600) for {}",
                c.display(),
                k.display(),
                names.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::IssueClient {
            ca: ca_dir,
            facility,
            out,
            name,
            days,
            not_before,
            not_after,
            roles,
            role_scheme,
            policies,
            signature_only,
            crl_urls,
        } => {
            let spec = ca::ClientCertSpec {
                facility,
                common_name: name,
                not_before: rfc3339("--not-before", not_before.as_deref())?,
                not_after: rfc3339("--not-after", not_after.as_deref())?,
                days,
                roles,
                role_scheme,
                policies,
                signature_only,
                crl_urls,
            };
            let (c, k, serial) = ca::issue_client(&ca_dir, &spec, &out)?;
            println!(
                "issued {} and {} (mode 0600) for facility {}, serial {serial}",
                c.display(),
                k.display(),
                spec.facility
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Crl {
            ca: ca_dir,
            revoke,
            revoke_serials,
            serials_file,
            next_update,
            days,
            out,
        } => {
            let mut hex = revoke_serials;
            if let Some(f) = serials_file {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                hex.extend(
                    text.lines()
                        .map(|l| l.split('#').next().unwrap_or("").trim())
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
            let next = rfc3339("--next-update", next_update.as_deref())?;
            let serials = ca::write_crl(&ca_dir, &revoke, &hex, days, next, &out)?;
            let shown = if serials.len() > 20 {
                format!("{} … (first 20)", serials[..20].join(" "))
            } else {
                serials.join(" ")
            };
            println!(
                "wrote {} revoking {} certificate(s): {shown}",
                out.display(),
                serials.len(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `scan`: the AV engine of the config's `[av]` table over files and folders.
fn scan_command(
    config: Option<PathBuf>,
    json: bool,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let path = config_path(config);
    let (_, cfg) = load(&path)?;
    let Some(av) = cfg.typed(&sekisho_av::AvEngine::new()?)? else {
        bail!(
            "{}: no [av] table: name the rules to scan with (yara = [...], clamav = [...]) or [[av.icap]] servers",
            path.display()
        );
    };
    scan::run(&av, json, paths)
}

/// `rules check`, `rules test-url`.
fn rules_command(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check { config } => {
            let path = config_path(config);
            let (_, cfg) = load(&path)?;
            let ips = cfg.typed(&sekisho_ips::IpsEngine::new()?)?;
            let waf = cfg.typed(&sekisho_waf::WafEngine)?;
            let behaviour = sandbox::check(&path);
            if ips.is_none() && waf.is_none() && behaviour.is_none() {
                bail!(
                    "{}: no [ips] or [waf] table: name the rule files (rules = [\"rules/ips/*.rules\"])",
                    path.display()
                );
            }
            let mut status = behaviour.unwrap_or(ExitCode::SUCCESS);
            if let Some(ips) = ips {
                let i = rules::check(&ips, &path)?;
                if i != ExitCode::SUCCESS {
                    status = i;
                }
            }
            if let Some(waf) = waf {
                let w = rules::check_waf(&waf, &path)?;
                if w != ExitCode::SUCCESS {
                    status = w;
                }
            }
            Ok(status)
        }
        RulesCommand::TestUrl {
            config,
            client,
            listener,
            policy,
            urls,
        } => {
            let path = config_path(config);
            let (_, cfg) = load(&path)?;
            let Some(uc) = cfg.typed(&sekisho_urlfilter::UrlEngine::default())? else {
                bail!(
                    "{}: no [urlfilter] table: name the lists (category_dirs = [...] or [[urlfilter.list]])",
                    path.display()
                );
            };
            let listener = listener.unwrap_or_else(|| {
                if cfg.proxy.listeners.is_empty() {
                    "forward".into()
                } else {
                    cfg.proxy.listener_name(0)
                }
            });
            rules::test_url(&uc, &path, client, &listener, policy.as_deref(), &urls)
        }
    }
}

/// `logs verify`: hash chains of rotated log files, in order.
fn verify_logs(key: Option<PathBuf>, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let key = match key {
        Some(k) => Some(std::fs::read(&k).with_context(|| format!("{}", k.display()))?),
        None => None,
    };
    let mut prev: Option<String> = None;
    let mut bad = false;
    for f in files {
        match sekisho_mss::chain::verify_file(f, key.as_deref(), prev.as_deref()) {
            Ok(v) => {
                println!("{}: ok ({} lines, last {})", f.display(), v.lines, v.last);
                prev = Some(v.last);
            }
            Err(e) => {
                println!("{}:{}: chain broken: {}", f.display(), e.line, e.reason);
                bad = true;
                prev = None;
            }
        }
    }
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `collector`: the MSS collector (syslog TCP/TLS, HTTP batches → files) until a signal.
fn collector(cfg: sekisho_mss::collector::CollectorConfig) -> anyhow::Result<ExitCode> {
    if cfg.syslog_tcp.is_empty()
        && cfg.syslog_tls.is_empty()
        && cfg.http.is_empty()
        && cfg.https.is_empty()
    {
        bail!("nothing to listen on: give --syslog-tcp, --syslog-tls, --http or --https");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("collector")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let (bound, serve) = sekisho_mss::collector::bind(cfg)
            .await
            .map_err(anyhow::Error::msg)?;
        for (kind, a) in &bound {
            println!("listening {kind} {a}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("signals")?;
        tokio::select! {
            _ = serve => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `check-config`: everything the config names, without starting.
fn check_config(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = config_path(config);
    let (assembly, cfg) = load(&path)?;
    for note in assembly.check(&cfg)? {
        println!("{note}");
    }
    println!("{}: OK", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `run`: the gateway until SIGINT/SIGTERM; SIGHUP reloads.
fn run_command(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = config_path(config);
    let (assembly, cfg) = load(&path)?;
    // What the proxy reads (certificates, trust anchors, sinks) is checked before anything is
    // created, and the engines compile their rules before a missing CA is made (in `run`).
    sekisho_proxy::check(&cfg.proxy)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sekisho")
        .build()
        .context("starting the runtime")?;
    rt.block_on(service::run(assembly, cfg, path))?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the CA named in `[tls]` when neither file exists (`sekisho_proxy::check` has already
/// refused a half-present pair).
pub(crate) fn ensure_ca(cfg: &Config) -> sekisho_proxy::Result<()> {
    let (c, k) = (&cfg.tls.ca_cert, &cfg.tls.ca_key);
    if c.exists() || k.exists() {
        return Ok(());
    }
    ca::create_ca(c, k, "Sekisho Gateway CA")?;
    tracing::warn!(
        cert = %c.display(),
        key = %k.display(),
        "no gateway CA found: created a new one; install {} in clients' trust stores \
         (`sekisho ca init --out DIR` makes one explicitly)",
        c.display()
    );
    Ok(())
}

/// Raises the open-file limit to its hard maximum (each client connection takes a descriptor, an
/// intercepted one two) and warns when it still cannot hold every listener's `max_connections`.
pub(crate) fn raise_nofile(cfg: &GatewayConfig) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let l = &cfg.proxy.limits;
    let need = (cfg.proxy.listeners.len() * l.max_connections * 2 + 256) as u64;
    if now < need {
        tracing::warn!(
            open_files = now,
            needed = need,
            "the open-file limit is below 2 x max_connections per listener: raise LimitNOFILE (systemd) or ulimit -n, or lower [limits] max_connections"
        );
    } else {
        tracing::info!(open_files = now, "open-file limit");
    }
}
