//! The embedded PostgreSQL cluster: Vigil's default database when no `DATABASE_URL` is given.
//!
//! The cluster lives in one directory (default `./data/pg`), is created with the system's
//! `initdb` on first use, started with `pg_ctl` listening only on a Unix socket inside that
//! directory (no TCP port), and stopped when Vigil exits. A second start reuses it; a cluster
//! already running in the directory (another Vigil process) is reused and left running.
//! PostgreSQL refuses to run as root, so when Vigil runs as root the cluster's processes run
//! as an unprivileged OS user (default `postgres`) that owns the directory.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Database and role that Vigil uses inside the embedded cluster.
pub const DATABASE: &str = "vigil";
/// PostgreSQL's default port number, which only names the socket file here.
const PORT: u16 = 5432;
/// Longest Unix socket path the kernel accepts (sun_path is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// How to install PostgreSQL, said whenever its binaries are missing.
const INSTALL_HINT: &str = "install PostgreSQL's server binaries (Debian/Ubuntu: `apt-get install postgresql`; \
     Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`), or set DATABASE_URL \
     (for example postgres://user:password@localhost:5432/vigil) to use a server you run";

/// Errors of the embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `pg_ctl`/`initdb` on PATH nor under `/usr/lib/postgresql/*/bin`.
    #[error(
        "PostgreSQL binaries (initdb, pg_ctl) not found on PATH nor under /usr/lib/postgresql/*/bin: {INSTALL_HINT}"
    )]
    BinariesNotFound,
    /// Running as root and the unprivileged user does not exist.
    #[error(
        "Vigil runs as root, and PostgreSQL refuses to: the embedded cluster runs as OS user {0:?}, \
         which does not exist. Create it (`useradd --system --no-create-home {0}`), set \
         database.embedded_os_user to another unprivileged user, run Vigil as a normal user, \
         or set DATABASE_URL"
    )]
    NoUnprivilegedUser(String),
    /// The cluster's directory cannot be reached by the user that runs PostgreSQL.
    #[error(
        "OS user {user:?} cannot enter {dir}: PostgreSQL runs as that user and needs execute \
         permission on every parent of the data directory; choose another --data-dir or `chmod o+x {dir}`"
    )]
    NotTraversable {
        /// The directory lacking permission.
        dir: PathBuf,
        /// The user that runs PostgreSQL.
        user: String,
    },
    /// The socket path would exceed the kernel's limit.
    #[error(
        "the data directory path {0} is too long for a Unix socket ({MAX_SOCKET_PATH} bytes with \
         the socket name); choose a shorter --data-dir"
    )]
    PathTooLong(PathBuf),
    /// The path contains a character that cannot be passed through pg_ctl's shell command.
    #[error("the data directory path {0} contains a quote or newline, which pg_ctl cannot pass on")]
    UnsupportedPath(PathBuf),
    /// A filesystem or process error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// `initdb` or `pg_ctl` exited unsuccessfully.
    #[error("{command} failed ({status}): {output}")]
    CommandFailed {
        /// The program that failed.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its output and the tail of the server log.
        output: String,
    },
    /// The cluster started but Vigil's database could not be created.
    #[error("cannot create database {DATABASE} in the embedded cluster: {0}")]
    CreateDatabase(#[source] sqlx::Error),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// The OS identity that runs the cluster's processes when Vigil runs as root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// A private PostgreSQL cluster that Vigil manages in one directory.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    started_here: bool,
    stopped: bool,
}

impl EmbeddedPostgres {
    /// Creates the cluster in `dir` if it has none, starts it unless it is already running,
    /// and makes sure Vigil's database exists. `os_user` runs the server when Vigil is root.
    pub async fn start(dir: &Path, os_user: &str) -> Result<Self, Error> {
        let bin_dir = find_bin_dir().ok_or(Error::BinariesNotFound)?;
        std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(io_err(format!("cannot resolve {}", dir.display())))?;
        check_path(&dir)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(prepare_for_user(&dir, os_user)?)
        } else {
            None
        };
        let mut cluster = Self {
            dir,
            bin_dir,
            run_as,
            started_here: false,
            stopped: false,
        };
        if !cluster.dir.join("PG_VERSION").is_file() {
            cluster.init().await?;
        }
        if !cluster.is_running().await? {
            cluster.start_server().await?;
            cluster.started_here = true;
        } else {
            tracing::info!(dir = %cluster.dir.display(), "embedded PostgreSQL already running; reusing it");
        }
        cluster.create_database().await?;
        Ok(cluster)
    }

    /// The cluster's directory, which also holds its socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this handle started the server (and so stops it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Options that connect to Vigil's database over the cluster's Unix socket.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options_for(DATABASE)
    }

    /// Options for any database of the cluster, as the `vigil` superuser.
    pub fn options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.dir)
            .port(PORT)
            .username(DATABASE)
            .database(database)
    }

    /// Starts the server again if it is not running (its postmaster was killed or stopped
    /// from outside); `true` when it was restarted.
    pub async fn ensure_running(&self) -> Result<bool, Error> {
        if self.is_running().await? {
            return Ok(false);
        }
        tracing::warn!(dir = %self.dir.display(), "embedded PostgreSQL is not running; restarting it");
        self.start_server().await?;
        Ok(true)
    }

    /// Keeps the server running until the task is aborted: checks every `every` and restarts
    /// it when it has stopped, waiting longer after each failed restart (up to 30 s) so a
    /// server that cannot start is not hammered.
    pub fn supervise(
        self: std::sync::Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                match self.ensure_running().await {
                    Ok(_) => wait = every,
                    Err(e) => {
                        wait = (wait * 2).min(std::time::Duration::from_secs(30));
                        tracing::warn!(
                            retry_secs = wait.as_secs(),
                            "embedded PostgreSQL did not restart: {e}"
                        );
                    }
                }
            }
        })
    }

    /// Asks `pg_ctl status` whether a server runs on the directory.
    pub async fn is_running(&self) -> Result<bool, Error> {
        let output = self
            .pg_command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.dir)
            .output()
            .await
            .map_err(io_err("cannot run pg_ctl status"))?;
        // pg_ctl status: 0 running, 3 not running, 4 no accessible data directory.
        Ok(output.status.success())
    }

    /// Stops the server if this handle started it (fast shutdown: rolls back open
    /// transactions, waits for the server to exit).
    pub async fn stop(mut self) -> Result<(), Error> {
        self.stopped = true;
        if !self.started_here {
            return Ok(());
        }
        let mut command = self.pg_command("pg_ctl");
        command
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.dir);
        self.run(command, "pg_ctl stop").await?;
        tracing::info!(dir = %self.dir.display(), "embedded PostgreSQL stopped");
        Ok(())
    }

    /// Hands the server over to a watcher process that stops it once process `pid` has
    /// exited. For harnesses, such as the test suite, that cannot run code at exit.
    pub fn stop_when_process_exits(mut self, pid: u32) -> Result<(), Error> {
        self.stopped = true;
        if !self.started_here {
            return Ok(());
        }
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let script =
            "while [ -d \"/proc/$1\" ]; do sleep 0.2; done; exec \"$2\" stop -m fast -D \"$3\"";
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", script, "vigil-pg-watch"])
            .arg(pid.to_string())
            .arg(&pg_ctl)
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.apply_user_std(&mut command);
        command
            .spawn()
            .map_err(io_err("cannot start the cluster watcher"))?;
        Ok(())
    }

    async fn init(&self) -> Result<(), Error> {
        tracing::info!(dir = %self.dir.display(), "creating embedded PostgreSQL cluster");
        let mut command = self.pg_command("initdb");
        command.arg("-D").arg(&self.dir).args([
            "-U",
            DATABASE,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]);
        self.run(command, "initdb").await
    }

    fn start_command(&self) -> Result<tokio::process::Command, Error> {
        let dir = self
            .dir
            .to_str()
            .ok_or_else(|| Error::UnsupportedPath(self.dir.clone()))?;
        // pg_ctl hands -o to a shell: paths are single-quoted (check_path refused quotes).
        let server_options = format!("-k '{dir}' -h '' -p {PORT}");
        let mut command = self.pg_command("pg_ctl");
        command
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-o")
            .arg(server_options);
        Ok(command)
    }

    async fn start_server(&self) -> Result<(), Error> {
        self.run(self.start_command()?, "pg_ctl start").await?;
        tracing::info!(dir = %self.dir.display(), "embedded PostgreSQL started");
        Ok(())
    }

    /// An outage, for chaos tests (`vigil demo --chaos`): stops the server (fast shutdown,
    /// every connection dropped), keeps it down for `down`, and starts it again. The future
    /// owns what it needs, so it can run in a task while the service keeps working.
    pub fn outage(
        &self,
        down: std::time::Duration,
    ) -> Result<impl Future<Output = Result<(), Error>> + Send + 'static, Error> {
        let mut stop = self.pg_command("pg_ctl");
        stop.args(["stop", "-w", "-m", "fast", "-D"]).arg(&self.dir);
        let start = self.start_command()?;
        let log = self.dir.join("server.log");
        Ok(async move {
            run_command(stop, "pg_ctl stop", &log).await?;
            tokio::time::sleep(down).await;
            run_command(start, "pg_ctl start", &log).await
        })
    }

    async fn create_database(&self) -> Result<(), Error> {
        let mut conn = self
            .options_for("postgres")
            .connect()
            .await
            .map_err(Error::CreateDatabase)?;
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await
                .map_err(Error::CreateDatabase)?;
        if !exists {
            sqlx::query("create database vigil")
                .execute(&mut conn)
                .await
                .map_err(Error::CreateDatabase)?;
        }
        conn.close().await.map_err(Error::CreateDatabase)?;
        Ok(())
    }

    fn pg_command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin_dir.join(program));
        // The server inherits the working directory: use one its user can enter.
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(false);
        if let Some(user) = &self.run_as {
            command.uid(user.uid).gid(user.gid).env("USER", &user.name);
        }
        command
    }

    fn apply_user_std(&self, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        command.current_dir(&self.dir);
        if let Some(user) = &self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
    }

    async fn run(&self, command: tokio::process::Command, what: &str) -> Result<(), Error> {
        run_command(command, what, &self.dir.join("server.log")).await
    }
}

/// Runs a cluster command; on failure the error carries its output and the last lines of
/// the server `log`.
async fn run_command(
    mut command: tokio::process::Command,
    what: &str,
    log: &Path,
) -> Result<(), Error> {
    let output = command
        .output()
        .await
        .map_err(io_err(format!("cannot run {what}")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        text = format!("{text}\n{}", stdout.trim());
    }
    if let Ok(log) = std::fs::read_to_string(log) {
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        text = format!("{text}\nserver.log (last lines):\n{}", tail.join("\n"));
    }
    Err(Error::CommandFailed {
        command: what.to_owned(),
        status: output.status,
        output: text,
    })
}

impl Drop for EmbeddedPostgres {
    /// A handle dropped without `stop` (an error path, a panic) still stops the server it
    /// started, so that no orphan PostgreSQL outlives Vigil.
    fn drop(&mut self) {
        if self.started_here && !self.stopped {
            let mut command = std::process::Command::new(self.bin_dir.join("pg_ctl"));
            command
                .args(["stop", "-w", "-m", "fast", "-D"])
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            self.apply_user_std(&mut command);
            let _ = command.status();
        }
    }
}

/// Finds the directory holding `initdb` and `pg_ctl`: on PATH first, then the highest
/// major version under `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| has_both(dir))
        // Debian links pg_ctl into PATH; its real directory also holds `postgres`.
        .and_then(|dir| dir.join("pg_ctl").canonicalize().ok())
        .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
        .filter(|dir| has_both(dir));
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                has_both(&bin).then_some((major, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

fn check_path(dir: &Path) -> Result<(), Error> {
    let text = dir.as_os_str();
    if text
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b'\'' | b'\n' | b'"'))
    {
        return Err(Error::UnsupportedPath(dir.to_owned()));
    }
    let socket = dir.join(format!(".s.PGSQL.{PORT}"));
    if socket.as_os_str().len() > MAX_SOCKET_PATH - 1 {
        return Err(Error::PathTooLong(dir.to_owned()));
    }
    Ok(())
}

/// Looks up the unprivileged user, checks it can reach `dir`, and gives it the directory.
fn prepare_for_user(dir: &Path, os_user: &str) -> Result<RunAs, Error> {
    let user = nix::unistd::User::from_name(os_user)
        .map_err(|e| Error::Io {
            context: format!("cannot look up OS user {os_user:?}"),
            source: io::Error::from(e),
        })?
        .filter(|user| !user.uid.is_root())
        .ok_or_else(|| Error::NoUnprivilegedUser(os_user.to_owned()))?;
    let run_as = RunAs {
        name: os_user.to_owned(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    };
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .map_err(io_err(format!("cannot read {}", ancestor.display())))?;
        let mode = meta.permissions().mode();
        let reachable = mode & 0o001 != 0
            || (std::os::unix::fs::MetadataExt::uid(&meta) == run_as.uid && mode & 0o100 != 0)
            || (std::os::unix::fs::MetadataExt::gid(&meta) == run_as.gid && mode & 0o010 != 0);
        if !reachable {
            return Err(Error::NotTraversable {
                dir: ancestor.to_owned(),
                user: os_user.to_owned(),
            });
        }
    }
    chown_tree(dir, run_as.uid, run_as.gid)?;
    Ok(run_as)
}

/// Gives `dir` and everything under it to `uid:gid`, skipping a tree already owned.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(io_err(format!("cannot read {}", dir.display())))?;
    if std::os::unix::fs::MetadataExt::uid(&meta) == uid {
        return Ok(());
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(io_err(format!("cannot chown {}", path.display())))?;
        let meta = std::fs::symlink_metadata(&path)
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)
                .map_err(io_err(format!("cannot list {}", path.display())))?
            {
                let entry = entry.map_err(io_err(format!("cannot list {}", path.display())))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_in_path_is_refused() {
        let err = check_path(Path::new("/tmp/it's")).unwrap_err();
        assert!(matches!(err, Error::UnsupportedPath(_)));
    }

    #[test]
    fn overlong_path_is_refused() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(120)));
        assert!(matches!(check_path(&long), Err(Error::PathTooLong(_))));
        assert!(check_path(Path::new("/tmp/vigil/pg")).is_ok());
    }

    #[test]
    fn missing_binaries_error_says_how_to_install() {
        let message = Error::BinariesNotFound.to_string();
        assert!(message.contains("apt-get install postgresql"));
        assert!(message.contains("DATABASE_URL"));
    }
}
