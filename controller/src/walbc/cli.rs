//! walbc's command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use super::client::{call_when_ready, when_ready};
use super::layout::Kind;
use super::layout::Layout;
use super::ops::Ctl;
use walb_proto::{archive_request as ar, proxy_request as pr, storage_request as sr};

#[derive(Parser)]
#[command(name = "walbc", version, about = "walb-rs controller")]
pub struct Cli {
    /// The layout file (TOML); default $WALB_LAYOUT, else ./walb-layout.toml.
    #[arg(long, global = true)]
    pub layout: Option<PathBuf>,
    /// Seconds an operation may wait for its result.
    #[arg(long, global = true, default_value_t = 120)]
    pub timeout: u64,
    #[command(flatten)]
    pub tls: walb_proto::wire::TlsArgs,
    /// The volume name typed again: a protected archive (`--protect`) runs a command that
    /// deletes backups of a volume only with this confirmation (docs/security.md).
    #[arg(long, global = true, value_name = "VOL")]
    pub confirm: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Send one command to one server (an id of the layout, or HOST:PORT); print its reply.
    Call {
        server: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Bind a volume to a wdev device on a storage server.
    InitStorage {
        storage: String,
        vol: String,
        wdev: String,
    },
    /// Full backup to the primary archive; prints the gid once it is restorable.
    FullBackup {
        storage: String,
        vol: String,
        /// Bulk size in bytes (k/m suffix), 512 to 4m.
        #[arg(long)]
        bulk: Option<String>,
    },
    /// Hash backup against the primary archive's latest snapshot (stops and resets the
    /// storage's volume first); prints the gid once restorable. Recovers an overflowed log.
    HashBackup {
        storage: String,
        vol: String,
        /// Bulk size in bytes (k/m suffix), 512 to 4m.
        #[arg(long)]
        bulk: Option<String>,
    },
    /// A running full or hash backup's progress (bytes, rate, ETA), or `idle`.
    Progress { storage: String, vol: String },
    /// Cancel a running full or hash backup (the volume returns to SyncReady).
    Cancel { storage: String, vol: String },
    /// Limit full and hash backup scans on a storage to BPS bytes per second (0: no limit).
    SetFullScanBps { storage: String, bps: u64 },
    /// Grow a volume end to end to SIZE (bytes, k/m/g suffix): archives, then storages (their
    /// data devices must have grown already).
    Resize {
        vol: String,
        size: String,
        /// Zero-fill the new area on the archives (their image files grow with zeros anyway).
        #[arg(long)]
        zero: bool,
    },
    /// Copy a volume from archive SRC to archive DST up to SRC's latest snapshot (a full copy
    /// first when DST has none); prints DST's latest snapshot.
    Replicate {
        vol: String,
        src: String,
        dst: String,
        /// DST holds another lineage (a full backup since): reset it and copy again.
        #[arg(long)]
        resync: bool,
        /// The address SRC reaches DST at (HOST:PORT), when not DST's layout address.
        #[arg(long)]
        dst_addr: Option<String>,
    },
    /// Back to SyncReady on a storage (stopped, WAL dropped) or an archive (stopped, every
    /// backup of the volume discarded), from any state.
    Reset { server: String, vol: String },
    /// Make a server forget the volume, from any state: a storage is reset first, a proxy
    /// first sends every diff it holds, an archive's backups are deleted.
    Clear { server: String, vol: String },
    /// Make proxy TO send the volume to the archives proxy FROM sends it to (replacing a
    /// proxy); TO is started.
    CopyArchiveInfo {
        vol: String,
        from: String,
        to: String,
    },
    /// Make archive DST receive the volume's diffs from the proxies too (after one replication).
    StartSynchronizing { vol: String, dst: String },
    /// Stop the proxies sending the volume to archive DST.
    StopSynchronizing { vol: String, dst: String },
    /// Make a storage a standby for the volume (its logs are dropped, not shipped).
    GoStandby { storage: String, vol: String },
    /// Prints 1 if the storage's log for the volume overflowed, else 0.
    IsOverflow { storage: String, vol: String },
    /// Prints 1 if the proxy gave up sending the volume to the archive, else 0.
    IsWdiffSendError {
        proxy: String,
        vol: String,
        archive: String,
    },
    /// Explicit snapshot; prints its gid once it is restorable on the primary archive. With
    /// --freeze/--pre/--post it is taken quiesced and recorded as consistent
    /// (docs/snapshots.md).
    Snapshot {
        storage: String,
        vol: String,
        /// Print the gid at once, without waiting.
        #[arg(long)]
        no_wait: bool,
        /// Freeze the file system mounted here (fsfreeze) for the mark; always thawed.
        #[arg(long, value_name = "MOUNTPOINT")]
        freeze: Option<PathBuf>,
        /// Run CMD (sh -c) before the freeze and the mark; no snapshot if it fails.
        #[arg(long, value_name = "CMD")]
        pre: Option<String>,
        /// Run CMD (sh -c) after the mark and the thaw; runs whenever --pre ran.
        #[arg(long, value_name = "CMD")]
        post: Option<String>,
        /// Seconds the mark may take while the file system is frozen (then it is thawed and the
        /// snapshot fails).
        #[arg(long, default_value_t = 30)]
        freeze_timeout: u64,
        /// Also hash the device at the snapshot (read whole, while nothing writes to it: with
        /// --freeze, the hash counts against --freeze-timeout) and give the digest to every
        /// archive holding VOL, for `verify --deep`.
        #[arg(long)]
        hash: bool,
    },
    /// Restore the newest restorable point (explicit or implicit) of VOL to PATH: a block
    /// device is written in place, any other path becomes an image file. Prints the gid, its
    /// time and its age (docs/recovery.md, "Disaster failover").
    Failover {
        vol: String,
        #[arg(long)]
        archive: Option<String>,
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
    },
    /// After a failover, make storage STORAGE's device of VOL a copy of the promoted image
    /// or block device PATH on this host: only the bulks whose BLAKE3 differs are sent and
    /// written through the wdev device, then a hash backup re-syncs the primary archive.
    /// Prints the bulks that differed, the bytes sent, the volume's size and the hash
    /// backup's gid (docs/recovery.md, "Failback").
    Failback {
        vol: String,
        /// The promoted image (a file or block device, not in use) on the host walbc runs on.
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// The storage whose device becomes the copy (the old primary).
        #[arg(long)]
        storage: String,
    },
    /// Restore snapshot GID to an image file on the archive host; prints its path.
    Restore {
        vol: String,
        gid: u64,
        #[arg(long)]
        archive: Option<String>,
        /// Attach a loop device to the image and print it too (needs root).
        #[arg(long = "loop")]
        attach_loop: bool,
        /// Replace an earlier restore of the same gid (which may have been mounted and
        /// changed); without it that is refused.
        #[arg(long)]
        force: bool,
    },
    /// Retention on VOL now by the archive's keep rules: prints each restorable point with
    /// keep (and why) or drop; `--dry-run` changes nothing.
    Retention {
        vol: String,
        #[arg(long)]
        archive: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Read back every stored wdiff (every checksum) and the base image of VOL on an archive;
    /// exits 1 naming each damaged file and offset.
    Verify {
        vol: String,
        #[arg(long)]
        archive: Option<String>,
        /// Also restore (virtually) every snapshot taken with `snapshot --hash` and compare
        /// it with the device's hash.
        #[arg(long)]
        deep: bool,
    },
    /// Write diffs up to GID into the archive's base image.
    Apply {
        vol: String,
        gid: u64,
        #[arg(long)]
        archive: Option<String>,
    },
    /// Merge the diffs from GIDB to GIDE into one.
    Merge {
        vol: String,
        gid_b: u64,
        gid_e: u64,
        #[arg(long)]
        archive: Option<String>,
    },
    /// Make the clean snapshots GID... implicit: hidden from `get restorable`, and a merge may
    /// merge across them.
    DisableSnapshot {
        vol: String,
        #[arg(required = true)]
        gids: Vec<u64>,
        #[arg(long)]
        archive: Option<String>,
    },
    /// Make the clean snapshots GID... explicit again (undoes disable-snapshot).
    EnableSnapshot {
        vol: String,
        #[arg(required = true)]
        gids: Vec<u64>,
        #[arg(long)]
        archive: Option<String>,
    },
    /// Status of every server, or a volume's summary (`--json`).
    Status {
        vol: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// `status` redrawn every INTERVAL seconds until interrupted (on a terminal the screen is
    /// cleared first; otherwise each round follows the last).
    Watch {
        vol: Option<String>,
        #[arg(long, default_value_t = 1)]
        interval: u64,
    },
    /// Send a wdiff file to an archive as diff GIDB → GIDE (what a proxy does), with the
    /// device uuid the file carries; prints `accept`, or the archive's rejection word and
    /// exits 1.
    WdiffSend {
        archive: String,
        vol: String,
        file: PathBuf,
        gid_b: u64,
        gid_e: u64,
        /// Send the file as if it came from the device of this uuid (hex). The archive then
        /// takes it as the volume's data whatever device it came from: a wrong file makes
        /// every later restore of the volume wrong.
        #[arg(long, value_name = "UUID")]
        unsafe_stamp_uuid: Option<String>,
        /// Device size in LB; default: from the file's highest address.
        #[arg(long)]
        size_lb: Option<u64>,
    },
    /// Start wdevd, a storage, a proxy and an archive on localhost in DIR, back up, snapshot,
    /// restore and verify; leaves everything running (`--stop` ends it).
    Quickstart {
        #[arg(long, default_value = "/var/tmp/walb-quickstart")]
        dir: PathBuf,
        /// Device size (K/M/G suffixes; whole MiB).
        #[arg(long, value_parser = walb_core::size::parse_size, default_value = super::quickstart::DEV_SIZE)]
        size: u64,
        /// Log device size (K/M/G suffixes; whole MiB, large enough for the device).
        #[arg(long, value_parser = walb_core::size::parse_size, default_value = super::quickstart::LOG_SIZE)]
        log_size: u64,
        #[arg(long)]
        stop: bool,
    },
    /// Wake storages (retry transfers now) or proxies (resend now, clear send errors).
    Kick { servers: Vec<String> },
    /// Write a CA and a certificate + key per server of the layout, plus controller.crt and
    /// monitor.crt, into DIR (docs/security.md).
    GenCerts {
        dir: PathBuf,
        /// Replace an existing CA (every certificate it signed stops working).
        #[arg(long)]
        force: bool,
    },
    /// Make a server reload its certificate, key and CA from the same files (as SIGHUP does):
    /// new connections get the new certificate, open ones and their transfers go on. Prints
    /// the new certificate's serial; on a failure the server keeps the old one.
    RotateCerts { server: String },
    /// The repository on object storage (s3://BUCKET/PREFIX or file:///PATH), without any
    /// daemon: snapshots, restore, verify, gc (docs/repository.md).
    Repo {
        #[command(subcommand)]
        cmd: super::repo::RepoCmd,
    },
}

/// A server given as HOST:PORT, or as an id of the layout `load` reads.
fn server_addr(server: String, load: impl Fn() -> Result<Layout>) -> Result<String> {
    Ok(if server.contains(':') {
        server
    } else {
        load()?.find(&server)?.1.addr.clone()
    })
}

fn layout_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("WALB_LAYOUT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("walb-layout.toml"))
}

pub async fn run(cli: Cli) -> Result<()> {
    cli.tls.init()?;
    if let Some(vol) = &cli.confirm {
        walb_proto::control::set_confirm(vol);
    }
    let path = layout_path(cli.layout);
    let load = || Layout::load(&path);
    let ctl = || -> Result<Ctl> {
        Ok(Ctl {
            layout: load()?,
            timeout: Duration::from_secs(cli.timeout),
            record: super::quiesce::record_path(&path),
        })
    };
    match cli.cmd {
        Cmd::Repo { cmd } => super::repo::run(cmd).await?,
        Cmd::GenCerts { dir, force } => {
            super::certs::generate(&dir, &load()?, force)?;
            println!("{}", dir.display());
        }
        Cmd::Call { server, args } => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let addr = server_addr(server, load)?;
            let out = when_ready(&addr, Duration::from_secs(cli.timeout), || {
                super::words::call_words(&addr, &args)
            })
            .await?;
            print_reply(&out);
        }
        Cmd::RotateCerts { server } => {
            let addr = server_addr(server, load)?;
            let out = call_when_ready(
                &addr,
                walb_proto::control_request::RotateCerts {},
                Duration::from_secs(cli.timeout),
            )
            .await?;
            print_reply(&out.summary);
        }
        Cmd::InitStorage { storage, vol, wdev } => {
            ctl()?.init_storage(&storage, &vol, &wdev).await?;
        }
        Cmd::FullBackup { storage, vol, bulk } => {
            println!(
                "{}",
                ctl()?.full_backup(&storage, &vol, bulk.as_deref()).await?
            );
        }
        Cmd::HashBackup { storage, vol, bulk } => {
            println!(
                "{}",
                ctl()?.hash_backup(&storage, &vol, bulk.as_deref()).await?
            );
        }
        Cmd::Progress { storage, vol } => {
            let c = ctl()?;
            let s = c.storage(&storage)?.clone();
            let p = c.call(&s, sr::GetProgress { vol }).await?;
            println!("{}", super::ops::progress_line(&p));
        }
        Cmd::Cancel { storage, vol } => {
            let c = ctl()?;
            let s = c.storage(&storage)?.clone();
            c.call(&s, sr::Cancel { vol }).await?;
        }
        Cmd::SetFullScanBps { storage, bps } => {
            let c = ctl()?;
            let s = c.storage(&storage)?.clone();
            c.call(&s, sr::SetFullScanBps { bps }).await?;
        }
        // The archives' image files grow with zeros: `--zero` asks for nothing more.
        Cmd::Resize { vol, size, zero: _ } => {
            let bytes = walb_core::size::parse_size(&size).map_err(anyhow::Error::msg)?;
            if bytes == 0 || !bytes.is_multiple_of(512) {
                bail!("size {size}: a positive multiple of 512 bytes");
            }
            ctl()?.resize(&vol, bytes / 512).await?;
        }
        Cmd::Replicate {
            vol,
            src,
            dst,
            resync,
            dst_addr,
        } => {
            let latest = ctl()?
                .replicate(&vol, &src, &dst, dst_addr.as_deref(), resync)
                .await?;
            println!("{} {}", latest.gid_b, latest.gid_e);
        }
        Cmd::Reset { server, vol } => ctl()?.reset(&server, &vol).await?,
        Cmd::Clear { server, vol } => ctl()?.clear(&server, &vol).await?,
        Cmd::CopyArchiveInfo { vol, from, to } => {
            ctl()?.copy_archive_info(&vol, &from, &to).await?
        }
        Cmd::StartSynchronizing { vol, dst } => ctl()?.start_synchronizing(&vol, &dst).await?,
        Cmd::StopSynchronizing { vol, dst } => ctl()?.stop_synchronizing(&vol, &dst).await?,
        Cmd::GoStandby { storage, vol } => ctl()?.go_standby(&storage, &vol).await?,
        Cmd::IsOverflow { storage, vol } => {
            let c = ctl()?;
            let s = c.storage(&storage)?.clone();
            let dev = c.call(&s, sr::Get { vol }).await?.device;
            let dev = dev.with_context(|| format!("{storage}: wdevd did not answer"))?;
            println!("{}", u8::from(dev.overflow));
        }
        Cmd::IsWdiffSendError {
            proxy,
            vol,
            archive,
        } => {
            let c = ctl()?;
            let p = c.layout.find(&proxy)?.1.clone();
            let e = c.call(&p, pr::SendError { vol, archive }).await?;
            println!("{}", u8::from(e.stopped));
        }
        Cmd::Snapshot {
            storage,
            vol,
            no_wait,
            freeze,
            pre,
            post,
            freeze_timeout,
            hash,
        } => {
            let q = super::quiesce::Quiesce {
                pre,
                post,
                freeze,
                timeout: Duration::from_secs(freeze_timeout),
                hash,
            };
            println!(
                "{}",
                ctl()?
                    .snapshot_quiesced(&storage, &vol, &q, !no_wait)
                    .await?
            );
        }
        Cmd::Failover { vol, archive, to } => {
            let f = ctl()?.failover(&vol, archive.as_deref(), &to).await?;
            println!("gid {}", f.gid);
            println!("time {}", f.time);
            println!("age_s {}", f.age_s);
            println!("path {}", to.display());
        }
        Cmd::Failback { vol, from, storage } => {
            let f = ctl()?.failback(&vol, &storage, &from).await?;
            println!("bulks_differed {}", f.changed);
            println!("bytes_sent {}", f.sent);
            println!("volume_bytes {}", f.size);
            println!("gid {}", f.gid);
        }
        Cmd::Restore {
            vol,
            gid,
            archive,
            attach_loop,
            force,
        } => {
            let path = ctl()?.restore(&vol, gid, archive.as_deref(), force).await?;
            println!("{path}");
            if attach_loop {
                println!("{}", attach(&path)?);
            }
        }
        Cmd::Retention {
            vol,
            archive,
            dry_run,
        } => {
            let c = ctl()?;
            let a = c.layout.archive(archive.as_deref())?.clone();
            let r = ar::Retention {
                vol: vol.clone(),
                dry_run,
            };
            let plan = c.with_progress(&a, &vol, c.call(&a, r)).await?;
            println!("{}", super::words::retention_text(&plan));
        }
        Cmd::Verify { vol, archive, deep } => {
            let c = ctl()?;
            let a = c.layout.archive(archive.as_deref())?.clone();
            let v = ar::Verify {
                vol: vol.clone(),
                deep,
            };
            let r = c.with_progress(&a, &vol, c.call(&a, v)).await?;
            println!(
                "ok {} files {} bytes {} snapshots matching the device",
                r.files, r.bytes, r.deep
            );
        }
        Cmd::Apply { vol, gid, archive } => {
            let c = ctl()?;
            let a = c.layout.archive(archive.as_deref())?.clone();
            let apply = ar::Apply {
                vol: vol.clone(),
                gid,
            };
            c.with_progress(&a, &vol, c.call(&a, apply)).await?;
        }
        Cmd::Merge {
            vol,
            gid_b,
            gid_e,
            archive,
        } => {
            let c = ctl()?;
            let a = c.layout.archive(archive.as_deref())?.clone();
            let merge = ar::Merge {
                vol: vol.clone(),
                gid_b,
                gid_e,
            };
            c.with_progress(&a, &vol, c.call(&a, merge)).await?;
        }
        Cmd::DisableSnapshot { vol, gids, archive } => {
            ctl()?
                .set_snapshots(&vol, &gids, false, archive.as_deref())
                .await?;
        }
        Cmd::EnableSnapshot { vol, gids, archive } => {
            ctl()?
                .set_snapshots(&vol, &gids, true, archive.as_deref())
                .await?;
        }
        Cmd::Status { vol, json } => {
            let c = ctl()?;
            match (vol, json) {
                (Some(v), true) => println!(
                    "{}",
                    serde_json::to_string_pretty(&c.status_json(&v).await?)?
                ),
                (None, true) => bail!("status --json needs a volume"),
                (v, false) => print!("{}", c.status(v.as_deref()).await?),
            }
        }
        Cmd::Watch { vol, interval } => {
            use std::io::IsTerminal;
            let c = ctl()?;
            let tty = std::io::stdout().is_terminal();
            loop {
                let text = c.status(vol.as_deref()).await?;
                if tty {
                    print!("\x1b[2J\x1b[H");
                }
                println!(
                    "{} (every {interval} s)\n{text}",
                    walb_core::meta::iso_utc(walb_core::meta::unix_now())
                );
                tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
            }
        }
        Cmd::WdiffSend {
            archive,
            vol,
            file,
            gid_b,
            gid_e,
            unsafe_stamp_uuid,
            size_lb,
        } => {
            let c = ctl()?;
            let a = c.layout.archive(Some(&archive))?.clone();
            let stamp_uuid = unsafe_stamp_uuid
                .map(|u| u.parse().map_err(anyhow::Error::msg))
                .transpose()
                .context("--unsafe-stamp-uuid")?;
            let send = super::send::WdiffSend {
                vol,
                stamp_uuid,
                gid_b,
                gid_e,
                size_lb,
            };
            let answer = send.run(&a.addr, &file).await?;
            println!("{answer}");
            if answer != "accept" {
                bail!("{} refused the diff: {answer}", a.id);
            }
        }
        Cmd::Quickstart {
            dir,
            size,
            log_size,
            stop,
        } => {
            let q = super::quickstart::Quickstart {
                dir,
                size,
                log_size,
            };
            if stop {
                q.stop()?;
            } else {
                q.start().await?;
            }
        }
        Cmd::Kick { servers } => {
            let c = ctl()?;
            for id in &servers {
                let (kind, s) = c.layout.find(id)?;
                match kind {
                    Kind::Storage => c.call(s, sr::Kick {}).await.map(drop)?,
                    Kind::Proxy => c.call(s, pr::Kick::default()).await.map(drop)?,
                    Kind::Archive => bail!("{id} is an archive: only storages and proxies retry"),
                }
            }
        }
    }
    Ok(())
}

fn print_reply(out: &str) {
    if out.ends_with('\n') || out.is_empty() {
        print!("{out}");
    } else {
        println!("{out}");
    }
}

/// `losetup --find --show` on `path`.
fn attach(path: &str) -> Result<String> {
    let out = std::process::Command::new("losetup")
        .args(["--find", "--show", path])
        .output()
        .context("run losetup")?;
    if !out.status.success() {
        bail!(
            "losetup {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
