//! The verify phase: every key this run wrote is read back linearizably and classified
//! against the model of acknowledged and in-doubt writes ([`crate::workload::verify`]),
//! which then starts from what was read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::client::Consistency;
use crate::workload::keys::key_name;
use crate::workload::verify::{Seen, VerifyReport, write_id};

/// Read every key ever written, linearizably, and classify it against the model.
pub(super) async fn run_verify(shared: &Arc<Shared>) -> VerifyReport {
    let keys = shared.model.keys();
    let mut report = VerifyReport::default();
    // A cluster without quorum must not turn verify into a hang: give up after this.
    let deadline = Instant::now() + Duration::from_secs(300);
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut reads = Vec::with_capacity(keys.len());
    for k in keys {
        let (shared, sem) = (shared.clone(), sem.clone());
        reads.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let name = key_name(k, shared.key_size);
            let mut backoff = Duration::from_millis(50);
            for _ in 0..5 {
                if Instant::now() >= deadline {
                    break;
                }
                match shared.client.get(&name, Consistency::Linearizable).await {
                    Ok(Some(v)) => return (k, write_id(&v)),
                    Ok(None) => return (k, Seen::Missing),
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
            (k, Seen::Unreadable)
        }));
    }
    let at_us = shared.run_start.elapsed().as_micros() as u64;
    for r in reads {
        if let Ok((k, seen)) = r.await {
            shared.model.classify(k, seen, &mut report);
            // A later verify phase judges the writes after this one only.
            shared.model.rebase(k, seen, at_us);
        }
    }
    report
}
