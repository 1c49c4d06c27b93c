//! The one register–check–wait loop behind every long poll (a receive that waits
//! for a message, a publish that waits until its records are stored).
//!
//! A wake-up signal only says "something may have changed"; the check decides. The
//! loop registers for the signal *before* checking, so a change between the check
//! and the wait still wakes it, and it re-checks at least every `recheck` anyway:
//! messages also become visible by the passing of time, and a change made by
//! another replica may reach this process late or, if a notification is lost,
//! not at all.

use std::{future::Future, time::Duration};

use tokio::{sync::Notify, time::Instant};

use crate::StoreResult;

/// Runs `check` until it yields `Some`, or until `wait` has passed (then `None`).
/// `check` runs at least once, even with a zero `wait`.
pub async fn until<T, F, Fut>(
    signal: &Notify,
    wait: Duration,
    recheck: Duration,
    mut check: F,
) -> StoreResult<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<Option<T>>>,
{
    let deadline = Instant::now() + wait;
    loop {
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(found) = check().await? {
            return Ok(Some(found));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let next_look = (now + recheck).min(deadline);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(next_look) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use super::*;

    #[tokio::test]
    async fn a_signal_between_checks_is_not_missed() {
        let signal = Arc::new(Notify::new());
        let checks = Arc::new(AtomicU32::new(0));
        let (s, c) = (signal.clone(), checks.clone());
        let started = std::time::Instant::now();
        let found = until(
            &signal,
            Duration::from_secs(10),
            Duration::from_secs(10),
            || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                // The first check sees nothing and signals "arrived" before the loop
                // waits: the registration made before the check must catch it.
                if n == 0 {
                    s.notify_waiters();
                }
                async move { Ok((n == 1).then_some(n)) }
            },
        )
        .await
        .unwrap();
        assert_eq!(found, Some(1));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn it_gives_up_at_the_deadline_and_checks_at_least_once() {
        let signal = Notify::new();
        let checks = AtomicU32::new(0);
        let found: Option<()> = until(&signal, Duration::ZERO, Duration::from_secs(1), || {
            checks.fetch_add(1, Ordering::SeqCst);
            async { Ok(None) }
        })
        .await
        .unwrap();
        assert_eq!(found, None);
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        let found: Option<()> = until(
            &signal,
            Duration::from_millis(120),
            Duration::from_millis(20),
            || {
                checks.fetch_add(1, Ordering::SeqCst);
                async { Ok(None) }
            },
        )
        .await
        .unwrap();
        assert_eq!(found, None);
        assert!(
            checks.load(Ordering::SeqCst) >= 4,
            "re-checked without a signal"
        );
    }
}
