//! The `keel` binary: command line, configuration, wiring of adapters, start-up and
//! shutdown. Everything else lives in the library crates; see ARCHITECTURE.md.

mod apply;
mod config;
mod logging;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_core::{
    apikey::{ApiKey, Scopes},
    clock::SystemClock,
};
use keel_server::{
    app::{App, AppOptions},
    services, ServerConfig,
};
use keel_store::{Backends, TenantId};

use crate::config::{Config, Overrides};

/// mimalloc: Keel's request path allocates many small, short-lived objects across
/// threads, which glibc's allocator serves measurably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "One binary for an event-driven backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Keel (every role by default) until SIGTERM or Ctrl-C.
    Serve {
        /// Address and port to listen on [env: KEEL_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<String>,
        /// Where embedded state lives [env: KEEL_DATA_DIR] [default: ./keel-data]
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Comma-separated: api, worker, prober [env: KEEL_ROLES] [default: all]
        #[arg(long)]
        roles: Option<String>,
    },
    /// Apply pending schema migrations and exit.
    Migrate {
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Print the effective configuration (secrets masked).
    Config,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Manage uptime monitors.
    Monitors {
        #[command(subcommand)]
        command: MonitorsCommand,
    },
    /// Print reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Subcommand)]
enum MonitorsCommand {
    /// Apply a monitor set from a YAML or JSON file, by name: new ones are
    /// created, changed ones replaced, the same ones left alone.
    Apply {
        file: std::path::PathBuf,
        /// The tenant's id or name; the default tenant when left out.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// A month's uptime report as a Markdown table: per monitor and SLO, uptime,
    /// objective, met or missed, downtime, incidents (in KEEL_TIME_ZONE).
    Uptime {
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// The tenant's id or name; the default tenant when left out.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print it as JSON.
    Create { name: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key for a tenant and print it (the secret is shown only here).
    Create {
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes: read, write, admin, operator.
        #[arg(long, default_value = "read,write")]
        scopes: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let overrides = match &cli.command {
        Command::Serve {
            listen,
            data_dir,
            roles,
        } => Overrides {
            listen: listen.clone(),
            data_dir: data_dir.clone(),
            roles: roles.clone(),
        },
        Command::Migrate { data_dir } => Overrides {
            data_dir: data_dir.clone(),
            ..Default::default()
        },
        _ => Overrides::default(),
    };
    let config = Config::load(&overrides)?;
    match cli.command {
        Command::Config => {
            print!("{}", config.describe());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", keel_server::openapi_document());
            Ok(())
        }
        command => {
            logging::init(&config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run(command, config))
        }
    }
}

/// Opens the configured store and bus, applying pending migrations.
async fn open_backends(config: &Config) -> anyhow::Result<Backends> {
    keel_store::connect(&config.backend_settings())
        .await
        .with_context(|| format!("opening the store {}", config.describe_store()))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate { .. } => {
            // Opening applies pending migrations.
            let backends = open_backends(&config).await?;
            backends.store.ping().await?;
            println!(
                "migrations applied ({} store)",
                backends.store.backend_name()
            );
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let name = keel_server::routes::admin::parse_tenant_name(&name)
                .map_err(|e| anyhow::anyhow!(e.detail))?;
            let store = open_backends(&config).await?.store;
            let tenant = store.create_tenant(&name).await?;
            println!(
                "{}",
                serde_json::json!({"id": tenant.id.to_string(), "name": tenant.name})
            );
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Create { tenant, scopes },
        } => {
            let scopes = Scopes::parse_csv(&scopes).map_err(anyhow::Error::msg)?;
            let store = open_backends(&config).await?.store;
            let tenant = TenantId(tenant);
            if store.tenant(&tenant).await?.is_none() {
                anyhow::bail!("no tenant with id {tenant}");
            }
            let (key, stored) = services::issue_key(&*store, &tenant, scopes).await?;
            println!(
                "{}",
                serde_json::json!({"api_key": key.reveal(), "prefix": stored.prefix, "tenant_id": tenant.to_string(), "scopes": stored.scopes.to_csv()})
            );
            Ok(())
        }
        Command::Monitors {
            command: MonitorsCommand::Apply { file, tenant },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let specs = apply::parse_file(&text)?;
            let store = open_backends(&config).await?.store;
            let tenant = find_tenant(&*store, tenant.as_deref()).await?;
            let applied = apply::apply(&*store, &tenant, specs).await?;
            println!(
                "{}",
                serde_json::json!({
                    "created": applied.created,
                    "updated": applied.updated,
                    "unchanged": applied.unchanged,
                })
            );
            Ok(())
        }
        Command::Report {
            command: ReportCommand::Uptime { period, tenant },
        } => {
            let month = keel_server::reports::parse_period(&period).map_err(anyhow::Error::msg)?;
            let store = open_backends(&config).await?.store;
            let tenant = find_tenant(&*store, tenant.as_deref()).await?;
            let tz = jiff::tz::TimeZone::get(&config.time_zone)?;
            let report = keel_server::reports::uptime_report(
                &*store,
                &tenant,
                month,
                &tz,
                jiff::Timestamp::now(),
            )
            .await?;
            print!("{}", report.to_markdown());
            Ok(())
        }
        Command::Config | Command::Openapi => unreachable!("handled before the runtime starts"),
    }
}

/// A tenant by id, else by name.
async fn find_tenant(
    store: &dyn keel_store::Store,
    wanted: Option<&str>,
) -> anyhow::Result<keel_store::TenantId> {
    let Some(wanted) = wanted else {
        return Ok(keel_store::TenantId::default_tenant());
    };
    let id = keel_store::TenantId(wanted.to_owned());
    if store.tenant(&id).await?.is_some() {
        return Ok(id);
    }
    let mut cursor = None;
    loop {
        let page = store
            .list_tenants(keel_store::PageRequest { limit: 500, cursor })
            .await?;
        if let Some(t) = page.items.into_iter().find(|t| t.name == wanted) {
            return Ok(t.id);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => anyhow::bail!("no tenant with id or name {wanted:?}"),
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let backends = open_backends(&config).await?;
    let configured_key = config.bootstrap_admin_key.expose().and_then(ApiKey::parse);
    match services::bootstrap(&*backends.store, configured_key.as_ref())
        .await
        .map_err(anyhow::Error::msg)?
    {
        services::Bootstrap::Created(key) => {
            println!(
                "Bootstrap operator key (shown once, store it now): {}",
                key.reveal()
            );
        }
        services::Bootstrap::Installed => tracing::info!("installed KEEL_BOOTSTRAP_ADMIN_KEY"),
        services::Bootstrap::AlreadyDone => {}
    }
    let server_config = ServerConfig {
        time_zone: jiff::tz::TimeZone::get(&config.time_zone)?,
        body_limit_bytes: config.body_limit_bytes,
        rate_limit_per_second: config.rate_limit_per_second,
        rate_limit_burst: config.rate_limit_burst,
        metrics_public: config.metrics_public,
        key_cache_ttl: config.key_cache_ttl(),
        read_cache_ttl: Duration::from_millis(config.read_cache_ttl_ms),
        limits: config.limits.clone(),
        // SLOs are evaluated twice a minute: finer than the 5-minute window.
        ..ServerConfig::default()
    };
    let roles = config.role_set();
    let listener = if roles.api {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        println!(
            "Keel listening on http://{} ({} store, data in {})",
            listener.local_addr()?,
            backends.store.backend_name(),
            config.data_dir.display()
        );
        Some(listener)
    } else {
        None
    };
    let app = App::start(
        backends,
        AppOptions {
            clock: Arc::new(SystemClock),
            config: server_config,
            roles,
            request_log: logging::request_log(&config.log_format),
        },
        listener,
    );
    tracing::info!(roles = %config.roles, "keel started");
    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    app.shutdown(Duration::from_secs(config.shutdown_grace_s))
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called,
/// not when it is first awaited, so a signal that arrives during start-up is
/// already a graceful shutdown rather than the default instant death.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}
