//! Layered configuration: built-in defaults, then `keel.toml`, then `KEEL_*`
//! environment variables, then command-line flags — each later layer wins. Every
//! option, its default and its variable are listed in [`Config::describe`] and in
//! README.md.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use keel_core::apikey::ApiKey;
use keel_server::limits::Limits;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A value that never prints in full.
#[derive(Clone, Default)]
pub struct Secret(Option<String>);

impl Secret {
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Secret {
    fn masked(&self) -> String {
        match &self.0 {
            None => "(unset)".into(),
            Some(v) => match ApiKey::parse(v) {
                Some(key) => format!("keel_{}_********", key.prefix()),
                None => "********".into(),
            },
        }
    }
}

/// Settings of the PostgreSQL adapter: flat keys in `keel.toml`,
/// `KEEL_POSTGRES_*` in the environment. TLS is chosen in the store URL
/// (`?sslmode=verify-full&sslrootcert=/path/ca.pem`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresSettings {
    /// Connections per process.
    pub postgres_pool_size: u32,
    /// Longest a statement may run before PostgreSQL cancels it (→ 503).
    pub postgres_statement_timeout_ms: u64,
    /// Longest a request waits for a free connection (→ 503).
    pub postgres_acquire_timeout_ms: u64,
    /// Role every session switches to; row-level security binds it. Empty: the
    /// URL's user serves requests itself (refused if it bypasses RLS).
    pub postgres_app_role: String,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        let defaults = keel_store::PostgresOptions::default();
        Self {
            postgres_pool_size: defaults.pool_size,
            postgres_statement_timeout_ms: defaults.statement_timeout.as_millis() as u64,
            postgres_acquire_timeout_ms: defaults.acquire_timeout.as_millis() as u64,
            postgres_app_role: defaults.app_role,
        }
    }
}

impl PostgresSettings {
    pub fn options(&self) -> keel_store::PostgresOptions {
        keel_store::PostgresOptions {
            pool_size: self.postgres_pool_size,
            statement_timeout: Duration::from_millis(self.postgres_statement_timeout_ms),
            acquire_timeout: Duration::from_millis(self.postgres_acquire_timeout_ms),
            app_role: self.postgres_app_role.clone(),
        }
    }
}

/// A URL with its password replaced by `********`.
fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("********"));
            parsed.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub store: String,
    pub bus: String,
    pub cache: String,
    pub objects: String,
    pub roles: String,
    pub bootstrap_admin_key: Secret,
    pub time_zone: String,
    pub body_limit_bytes: usize,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: f64,
    pub metrics_public: bool,
    pub key_cache_ttl_s: u64,
    pub read_cache_ttl_ms: u64,
    pub log_format: String,
    pub shutdown_grace_s: u64,
    /// Timeouts, caps and quotas (`keel_server::limits::Limits`): flat keys in
    /// `keel.toml`, `KEEL_<NAME>` in the environment.
    pub limits: Limits,
    pub postgres: PostgresSettings,
}

/// `keel.toml`: every key optional, same names as [`Config`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    bus: Option<String>,
    cache: Option<String>,
    objects: Option<String>,
    roles: Option<String>,
    bootstrap_admin_key: Option<String>,
    time_zone: Option<String>,
    body_limit_bytes: Option<usize>,
    rate_limit_per_second: Option<f64>,
    rate_limit_burst: Option<f64>,
    metrics_public: Option<bool>,
    key_cache_ttl_s: Option<u64>,
    read_cache_ttl_ms: Option<u64>,
    log_format: Option<String>,
    shutdown_grace_s: Option<u64>,
}

/// Command-line overrides (only what `serve` takes as flags).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub roles: Option<String>,
}

impl Config {
    /// Loads defaults ← `keel.toml` (from `KEEL_CONFIG`, else `./keel.toml` if it
    /// exists) ← `KEEL_*` ← `overrides`.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Self> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("KEEL_"))
            .collect();
        let file = match env.get("KEEL_CONFIG") {
            Some(path) => {
                Some(std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?)
            }
            None => std::fs::read_to_string("keel.toml").ok(),
        };
        Self::from_layers(file.as_deref(), &env, overrides)
    }

    pub fn from_layers(
        file: Option<&str>,
        env: &BTreeMap<String, String>,
        overrides: &Overrides,
    ) -> anyhow::Result<Self> {
        let mut table: toml::Table = match file {
            Some(text) => toml::from_str(text).context("keel.toml")?,
            None => toml::Table::new(),
        };
        let limits: Limits = layered(&mut table, env)?;
        let postgres: PostgresSettings = layered(&mut table, env)?;
        let file: FileConfig = toml::Value::Table(table).try_into().context("keel.toml")?;
        let var = |name: &str| env.get(name).cloned();
        fn parsed<T: std::str::FromStr>(
            name: &str,
            raw: Option<String>,
        ) -> anyhow::Result<Option<T>>
        where
            T::Err: fmt::Display,
        {
            raw.map(|v| {
                v.parse::<T>()
                    .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))
            })
            .transpose()
        }

        let data_dir = overrides
            .data_dir
            .clone()
            .or(var("KEEL_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("keel-data"));
        let store = var("KEEL_STORE")
            .or(file.store)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("keel.db").display()));
        let objects = var("KEEL_OBJECTS")
            .or(file.objects)
            .unwrap_or_else(|| format!("file://{}", data_dir.join("objects").display()));
        let config = Self {
            listen: overrides
                .listen
                .clone()
                .or(var("KEEL_LISTEN"))
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir,
            store,
            bus: var("KEEL_BUS")
                .or(file.bus)
                .unwrap_or_else(|| "embedded".into()),
            cache: var("KEEL_CACHE")
                .or(file.cache)
                .unwrap_or_else(|| "memory".into()),
            objects,
            roles: overrides
                .roles
                .clone()
                .or(var("KEEL_ROLES"))
                .or(file.roles)
                .unwrap_or_else(|| "api,worker,prober".into()),
            bootstrap_admin_key: Secret(
                var("KEEL_BOOTSTRAP_ADMIN_KEY").or(file.bootstrap_admin_key),
            ),
            time_zone: var("KEEL_TIME_ZONE")
                .or(file.time_zone)
                .unwrap_or_else(|| "UTC".into()),
            body_limit_bytes: parsed("KEEL_BODY_LIMIT_BYTES", var("KEEL_BODY_LIMIT_BYTES"))?
                .or(file.body_limit_bytes)
                .unwrap_or(1024 * 1024),
            rate_limit_per_second: parsed(
                "KEEL_RATE_LIMIT_PER_SECOND",
                var("KEEL_RATE_LIMIT_PER_SECOND"),
            )?
            .or(file.rate_limit_per_second)
            .unwrap_or(1000.0),
            rate_limit_burst: parsed("KEEL_RATE_LIMIT_BURST", var("KEEL_RATE_LIMIT_BURST"))?
                .or(file.rate_limit_burst)
                .unwrap_or(2000.0),
            metrics_public: parsed("KEEL_METRICS_PUBLIC", var("KEEL_METRICS_PUBLIC"))?
                .or(file.metrics_public)
                .unwrap_or(true),
            key_cache_ttl_s: parsed("KEEL_KEY_CACHE_TTL_S", var("KEEL_KEY_CACHE_TTL_S"))?
                .or(file.key_cache_ttl_s)
                .unwrap_or(5),
            read_cache_ttl_ms: parsed("KEEL_READ_CACHE_TTL_MS", var("KEEL_READ_CACHE_TTL_MS"))?
                .or(file.read_cache_ttl_ms)
                .unwrap_or(1000),
            log_format: var("KEEL_LOG_FORMAT")
                .or(file.log_format)
                .unwrap_or_else(|| "auto".into()),
            shutdown_grace_s: parsed("KEEL_SHUTDOWN_GRACE_S", var("KEEL_SHUTDOWN_GRACE_S"))?
                .or(file.shutdown_grace_s)
                .unwrap_or(30),
            limits,
            postgres,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        keel_store::StoreKind::parse(&self.store).map_err(anyhow::Error::msg)?;
        if self.postgres.postgres_pool_size == 0 {
            bail!("postgres_pool_size must be at least 1");
        }
        if self.bus != "embedded" {
            keel_store::nats::NatsSettings::parse(&self.bus).map_err(|why| {
                anyhow::anyhow!("{why} (the bus is \"embedded\" or nats://host:port)")
            })?;
        }
        keel_store::cache::CacheKind::parse(&self.cache).map_err(anyhow::Error::msg)?;
        keel_store::objects::blobs::BlobsKind::parse(&self.objects).map_err(anyhow::Error::msg)?;
        keel_server::app::Roles::parse(&self.roles).map_err(|e| anyhow::anyhow!("roles: {e}"))?;
        if let Some(raw) = self.bootstrap_admin_key.expose() {
            if ApiKey::parse(raw).is_none() {
                bail!("KEEL_BOOTSTRAP_ADMIN_KEY must look like keel_<prefix>_<secret> (lowercase letters and digits; prefix 4–32, secret 16–128)");
            }
        }
        if !(self.rate_limit_per_second > 0.0 && self.rate_limit_burst >= 1.0) {
            bail!("rate_limit_per_second must be > 0 and rate_limit_burst ≥ 1");
        }
        if self.body_limit_bytes == 0 {
            bail!("body_limit_bytes must be > 0");
        }
        self.limits.validate().map_err(anyhow::Error::msg)?;
        jiff::tz::TimeZone::get(&self.time_zone)
            .with_context(|| format!("time_zone {:?}", self.time_zone))?;
        if !matches!(self.log_format.as_str(), "auto" | "json" | "pretty") {
            bail!(
                "log_format {:?}: expected auto, json or pretty",
                self.log_format
            );
        }
        Ok(())
    }

    pub fn role_set(&self) -> keel_server::app::Roles {
        keel_server::app::Roles::parse(&self.roles).expect("validated on load")
    }

    /// What [`keel_store::connect`] needs to open the configured backends.
    pub fn backend_settings(&self) -> keel_store::BackendSettings {
        keel_store::BackendSettings {
            store: self.store.clone(),
            bus: self.bus.clone(),
            cache: self.cache.clone(),
            objects: self.objects.clone(),
            quotas: self.limits.store_quotas(),
            clock: std::sync::Arc::new(keel_core::clock::SystemClock),
            postgres: self.postgres.options(),
        }
    }

    /// The store URL as logs may show it (password masked).
    pub fn describe_store(&self) -> String {
        mask_url_password(&self.store)
    }

    pub fn key_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.key_cache_ttl_s)
    }

    /// The effective configuration as `keel.toml` text, secrets masked, each line
    /// annotated with the variable that sets it.
    pub fn describe(&self) -> String {
        let rows: Vec<(&str, String)> = vec![
            ("listen", quote(&self.listen)),
            ("data_dir", quote(&self.data_dir.display().to_string())),
            ("store", quote(&mask_url_password(&self.store))),
            ("bus", quote(&self.bus)),
            ("cache", quote(&mask_url_password(&self.cache))),
            ("objects", quote(&self.objects)),
            ("roles", quote(&self.roles)),
            (
                "bootstrap_admin_key",
                quote(&self.bootstrap_admin_key.masked()),
            ),
            ("time_zone", quote(&self.time_zone)),
            ("body_limit_bytes", self.body_limit_bytes.to_string()),
            (
                "rate_limit_per_second",
                format!("{:?}", self.rate_limit_per_second),
            ),
            ("rate_limit_burst", format!("{:?}", self.rate_limit_burst)),
            ("metrics_public", self.metrics_public.to_string()),
            ("key_cache_ttl_s", self.key_cache_ttl_s.to_string()),
            ("read_cache_ttl_ms", self.read_cache_ttl_ms.to_string()),
            ("log_format", quote(&self.log_format)),
            ("shutdown_grace_s", self.shutdown_grace_s.to_string()),
        ];
        let limits = toml::Table::try_from(&self.limits).expect("limits serialise");
        let postgres = toml::Table::try_from(&self.postgres).expect("settings serialise");
        rows.into_iter()
            .chain(limits.iter().map(|(k, v)| (k.as_str(), v.to_string())))
            .chain(postgres.iter().map(|(k, v)| (k.as_str(), v.to_string())))
            .map(|(k, v)| format!("{k} = {v}  # KEEL_{}\n", k.to_uppercase()))
            .collect()
    }
}

/// Layers a settings struct whose every field has a default: its defaults, then the
/// same-named keys of `file` (which are taken out of it), then `KEEL_<KEY>`
/// variables, parsed as the default's type (lists are comma-separated).
fn layered<T: Serialize + DeserializeOwned + Default>(
    file: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<T> {
    let mut table = toml::Table::try_from(T::default()).context("default settings")?;
    for (key, value) in table.iter_mut() {
        if let Some(from_file) = file.remove(key) {
            *value = from_file;
        }
        let name = format!("KEEL_{}", key.to_uppercase());
        if let Some(raw) = env.get(&name) {
            let bad = |e: &dyn fmt::Display| anyhow::anyhow!("{name}={raw:?}: {e}");
            *value = match value {
                toml::Value::Integer(_) => {
                    toml::Value::Integer(raw.trim().parse().map_err(|e| bad(&e))?)
                }
                toml::Value::Float(_) => {
                    toml::Value::Float(raw.trim().parse().map_err(|e| bad(&e))?)
                }
                toml::Value::Boolean(_) => {
                    toml::Value::Boolean(raw.trim().parse().map_err(|e| bad(&e))?)
                }
                toml::Value::Array(_) => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ),
                _ => toml::Value::String(raw.clone()),
            };
        }
    }
    toml::Value::Table(table)
        .try_into()
        .context("settings out of range")
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::from_layers(None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.store, "sqlite://keel-data/keel.db");
        assert_eq!(c.role_set(), keel_server::app::Roles::ALL);
        assert_eq!(c.postgres.postgres_app_role, "keel_app");
    }

    #[test]
    fn environment_beats_file_and_flags_beat_environment() {
        let file = "listen = \"0.0.0.0:1\"\ndata_dir = \"/srv/keel\"\nrate_limit_burst = 5.0\n";
        let c = Config::from_layers(
            Some(file),
            &env(&[("KEEL_LISTEN", "127.0.0.1:2")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.store, "sqlite:///srv/keel/keel.db");
        assert_eq!(c.rate_limit_burst, 5.0);
        let flags = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = Config::from_layers(Some(file), &env(&[("KEEL_LISTEN", "127.0.0.1:2")]), &flags)
            .unwrap();
        assert_eq!(c.listen, "127.0.0.1:3");
    }

    #[test]
    fn secrets_are_masked() {
        let key = "keel_abcdefgh_0123456789abcdef0123";
        let c = Config::from_layers(
            None,
            &env(&[("KEEL_BOOTSTRAP_ADMIN_KEY", key)]),
            &Overrides::default(),
        )
        .unwrap();
        let shown = c.describe();
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("keel_abcdefgh_********"));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        for (k, v) in [
            ("KEEL_STORE", "mysql://x"),
            ("KEEL_RATE_LIMIT_PER_SECOND", "fast"),
            ("KEEL_BOOTSTRAP_ADMIN_KEY", "hunter2"),
            ("KEEL_TIME_ZONE", "Mars/Olympus"),
            ("KEEL_ROLES", "api,cook"),
        ] {
            let err =
                Config::from_layers(None, &env(&[(k, v)]), &Overrides::default()).unwrap_err();
            assert!(!format!("{err:#}").is_empty());
        }
        assert!(
            Config::from_layers(Some("nonsense = 1"), &env(&[]), &Overrides::default()).is_err()
        );
    }

    #[test]
    fn limits_layer_like_every_other_option() {
        let file = "max_connections = 7\nwebhook_allow = [\"10.0.0.0/8\"]\nidle_timeout_ms = 5\n";
        let c = Config::from_layers(
            Some(file),
            &env(&[
                ("KEEL_IDLE_TIMEOUT_MS", "2500"),
                ("KEEL_WEBHOOK_ALLOW_HTTP", "true"),
                ("KEEL_TENANT_RATE_LIMIT_PER_SECOND", "12.5"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.limits.webhook_allow, ["10.0.0.0/8"]);
        assert_eq!(c.limits.idle_timeout_ms, 2500);
        assert!(c.limits.webhook_allow_http);
        assert_eq!(c.limits.tenant_rate_limit_per_second, 12.5);
        assert_eq!(c.limits.max_uri_bytes, Limits::default().max_uri_bytes);
        let shown = c.describe();
        assert!(
            shown.contains("max_connections = 7  # KEEL_MAX_CONNECTIONS"),
            "{shown}"
        );
        for (k, v) in [
            ("KEEL_MAX_CONNECTIONS", "many"),
            ("KEEL_MAX_CONNECTIONS", "0"),
            ("KEEL_WEBHOOK_ALLOW", "10.0.0.0/99"),
            ("KEEL_IDLE_TIMEOUT_MS", "-1"),
        ] {
            assert!(
                Config::from_layers(None, &env(&[(k, v)]), &Overrides::default()).is_err(),
                "{k}={v}"
            );
        }
    }
}
