//! Runs the real `keel` binary for process-level tests.
#![allow(dead_code)] // each test file uses a different part

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// GET `url` with the operator key; the body as JSON.
pub async fn get_json(url: String) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub const OPERATOR_KEY: &str = "keel_testop01_0123456789abcdefghij0123456789";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Keel {
    pub child: Child,
    pub base: String,
}

impl Keel {
    pub fn start(data_dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("serve")
            .env("KEEL_DATA_DIR", data_dir)
            .env("KEEL_LISTEN", format!("127.0.0.1:{port}"))
            .env("KEEL_BOOTSTRAP_ADMIN_KEY", OPERATOR_KEY)
            .env("KEEL_RATE_LIMIT_PER_SECOND", "1000000")
            .env("KEEL_RATE_LIMIT_BURST", "1000000")
            .env("KEEL_TENANT_RATE_LIMIT_PER_SECOND", "1000000")
            .env("KEEL_TENANT_RATE_LIMIT_BURST", "1000000")
            .env("KEEL_FANOUT_BYTES_PER_SECOND_PER_TENANT", "1000000000000")
            // The tests' webhook receivers listen on loopback over plain HTTP.
            .env("KEEL_WEBHOOK_ALLOW", "127.0.0.0/8")
            .env("KEEL_WEBHOOK_ALLOW_HTTP", "true")
            .env("KEEL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keel");
        let keel = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        keel.wait_ready();
        keel
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.base.trim_start_matches("http://")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("keel did not start listening");
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keel did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Keel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
