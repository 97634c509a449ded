//! Framing and decoding under a seeded storm of bad input: random bytes, and valid messages mutated
//! and truncated. In process, through the same `read_frame` and `Message::decode` the scheduler's
//! readers use. Nothing may panic, every failure must be a typed `ProtocolError`, and a reader must
//! never accept more than its limit.

use std::time::Duration;

use ebbtide::protocol::framing::{FrameLimits, read_frame};
use ebbtide::protocol::{
    AdapterCommand, AdapterHeartbeat, CommandResponse, Hello, Message, PROTOCOL_VERSION, ProtocolError, Role, Task,
    TaskResult, TaskStatus, WorkerHeartbeat,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FRAMES: usize = 100_000;
const LIMIT: usize = 64 << 10;

fn samples() -> Vec<Message> {
    let caps: ebbtide_sdk::CapMap = [("gpu".to_owned(), 2), ("linux".to_owned(), -1)].into_iter().collect();
    vec![
        Message::Hello(Hello {
            role: Role::Worker,
            protocol_version: PROTOCOL_VERSION,
            identity: "w".into(),
            token: "t".into(),
        }),
        Message::Welcome { peer_id: 9 },
        Message::TaskSubmit(Task { id: 1, function: "echo".into(), payload: vec![1; 300], capabilities: caps.clone() }),
        Message::TaskResult(TaskResult { id: 1, status: TaskStatus::Done, output: b"done".to_vec() }),
        Message::TaskCancel(3),
        Message::WorkerHeartbeat(WorkerHeartbeat {
            capabilities: caps.clone(),
            group: Some(4),
            assigned: vec![1, 2, 3],
            gauges: vec![("kv".into(), 0.5)],
        }),
        Message::AdapterHeartbeat(AdapterHeartbeat {
            max_worker_groups: 8,
            workers_per_group: 2,
            capabilities: Some(caps.clone()),
            priority: 1,
        }),
        Message::AdapterCommand(AdapterCommand::Start { request_id: 1, group_id: 2, capabilities: caps }),
        Message::CommandResponse(CommandResponse {
            request_id: 1,
            ok: true,
            group_id: 2,
            worker_ids: vec!["a".into(), "b".into()],
            message: String::new(),
        }),
        Message::GroupLost { group_id: 2, reason: "gone".into() },
        Message::Goodbye("bye".into()),
    ]
}

/// One bad input: random bytes, or a valid frame with bytes flipped, cut short, or extended.
fn bad_input(rng: &mut ChaCha8Rng, valid: &[Vec<u8>]) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 => {
            let mut bytes = vec![0u8; rng.random_range(0..256)];
            rng.fill_bytes(&mut bytes);
            bytes
        }
        1 => {
            let mut frame = valid[rng.random_range(0..valid.len())].clone();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..frame.len());
                frame[i] = rng.random();
            }
            frame
        }
        2 => {
            let frame = &valid[rng.random_range(0..valid.len())];
            frame[..rng.random_range(0..frame.len())].to_vec()
        }
        _ => {
            let mut frame = valid[rng.random_range(0..valid.len())].clone();
            // A segment table that claims more (or less) than follows.
            let i = rng.random_range(4..8.min(frame.len()));
            frame[i] = rng.random();
            frame
        }
    }
}

#[test]
fn a_hundred_thousand_bad_frames_are_refused_typed_without_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let valid: Vec<Vec<u8>> = samples().iter().map(Message::encode).collect();
    for frame in &valid {
        assert!(Message::decode(frame).is_ok(), "the samples themselves decode");
    }
    let limits = FrameLimits { max_bytes: LIMIT, setting: "hello_frame_bytes", stall: Some(Duration::from_millis(10)) };
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let (mut decoded, mut refused, mut slowest) = (0usize, std::collections::BTreeMap::new(), Duration::ZERO);
    for _ in 0..FRAMES {
        let input = bad_input(&mut rng, &valid);
        let started = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                let mut reader = &input[..];
                match read_frame(&mut reader, limits).await {
                    Ok(Some(frame)) => {
                        assert!(frame.len() <= LIMIT, "a frame over the limit was accepted");
                        Message::decode(&frame).map(|_| ())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            })
        }));
        slowest = slowest.max(started.elapsed());
        match outcome.expect("framing or decoding panicked") {
            Ok(()) => decoded += 1,
            Err(e) => *refused.entry(kind(&e)).or_insert(0usize) += 1,
        }
    }
    eprintln!("{FRAMES} inputs: {decoded} decoded, refused by kind {refused:?}; slowest {slowest:?}");
    assert!(refused.values().sum::<usize>() > FRAMES / 2, "most bad input is refused");
    assert!(refused.len() >= 3, "the generator reaches several kinds of error: {refused:?}");
}

fn kind(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::Io(_) => "io",
        ProtocolError::TooLarge { .. } => "too-large",
        ProtocolError::Stalled(_) => "stalled",
        ProtocolError::Http => "http",
        ProtocolError::TooManySegments(_) => "too-many-segments",
        ProtocolError::Truncated => "truncated",
        ProtocolError::Malformed(_) => "malformed",
    }
}

/// A frame that claims many times its own size in elements cannot make decoding traverse more than
/// a few times its size: a list of 2^28 empty structs in a frame of a few words is refused.
#[test]
fn amplification_is_refused_by_the_traversal_limit() {
    let caps: ebbtide_sdk::CapMap = [("gpu".to_owned(), 1)].into_iter().collect();
    let frame = Message::TaskSubmit(Task { id: 1, function: "f".into(), payload: vec![], capabilities: caps }).encode();
    // The capability list is an inline composite list: its tag word says 1 element of 1 data word
    // and 1 pointer. Make it say 2^28 elements of nothing.
    let tag: u64 = (1 << 2) | (1 << 32) | (1 << 48);
    let at = (8..frame.len())
        .step_by(8)
        .find(|&i| u64::from_le_bytes(frame[i..i + 8].try_into().unwrap()) == tag)
        .expect("the list's tag word");
    let mut amplified = frame.clone();
    amplified[at..at + 8].copy_from_slice(&((1u64 << 28) << 2).to_le_bytes());
    let started = std::time::Instant::now();
    let result = Message::decode(&amplified);
    eprintln!("decoding a {}-byte amplified frame took {:?}: {result:?}", amplified.len(), started.elapsed());
    assert!(
        matches!(result, Err(ProtocolError::Malformed(_))),
        "2^28 elements from a {}-byte frame must be refused: {result:?}",
        amplified.len()
    );
}
