//! A link's outbound queue, bounded in frames and in bytes: senders fail fast or wait for
//! room when either bound is reached; the link's writer gives the room back as it writes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::proto::wire::frame::EncodedFrame;

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum QueueError {
    /// The queue is full (in frames or in bytes); the frame comes back.
    Full(EncodedFrame),
    /// The link is gone.
    Closed,
}

struct Bytes {
    used: AtomicUsize,
    limit: usize,
    room: Notify,
    /// Senders waiting for room; the writer notifies only when there are some.
    waiting: AtomicUsize,
}

/// The sending side of a link's queue. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LinkQueue {
    tx: mpsc::Sender<EncodedFrame>,
    bytes: Arc<Bytes>,
}

/// The writer's side: frames, and the bytes it gives back once written.
pub(crate) struct QueueReceiver {
    pub(crate) rx: mpsc::Receiver<EncodedFrame>,
    bytes: Arc<Bytes>,
}

/// A queue of at most `frames` frames and `bytes` bytes (one frame larger than `bytes`
/// fits when the queue is empty).
pub(crate) fn link_queue(frames: usize, bytes: usize) -> (LinkQueue, QueueReceiver) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    let bytes = Arc::new(Bytes {
        used: AtomicUsize::new(0),
        limit: bytes.max(1),
        room: Notify::new(),
        waiting: AtomicUsize::new(0),
    });
    (LinkQueue { tx, bytes: bytes.clone() }, QueueReceiver { rx, bytes })
}

impl LinkQueue {
    fn fits(&self, len: usize) -> bool {
        let used = self.bytes.used.load(Ordering::SeqCst);
        used == 0 || used + len <= self.bytes.limit
    }

    /// Queues `frame` if there is room.
    pub(crate) fn try_send(&self, frame: EncodedFrame) -> Result<(), QueueError> {
        let len = frame.len();
        if !self.fits(len) {
            return Err(QueueError::Full(frame));
        }
        self.bytes.used.fetch_add(len, Ordering::AcqRel);
        self.tx.try_send(frame).map_err(|e| {
            self.bytes.used.fetch_sub(len, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(f) => QueueError::Full(f),
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            }
        })
    }

    /// Queues `frame`, waiting for room.
    pub(crate) async fn send(&self, frame: EncodedFrame) -> Result<(), QueueError> {
        let len = frame.len();
        loop {
            let room = self.bytes.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Announced before looking at the room, and the writer frees room before looking
            // at this (both sequentially consistent): one of the two sees the other.
            self.bytes.waiting.fetch_add(1, Ordering::SeqCst);
            let (closed, fits) = (self.tx.is_closed(), self.fits(len));
            if closed || fits {
                self.bytes.waiting.fetch_sub(1, Ordering::SeqCst);
                if closed {
                    return Err(QueueError::Closed);
                }
                break;
            }
            room.await;
            self.bytes.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        self.bytes.used.fetch_add(len, Ordering::AcqRel);
        self.tx.send(frame).await.map_err(|_| {
            self.bytes.used.fetch_sub(len, Ordering::AcqRel);
            QueueError::Closed
        })
    }

    /// Frames waiting to be written.
    pub(crate) fn queued_frames(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        // The link is gone: senders waiting for room find the queue closed.
        self.bytes.room.notify_waiters();
    }
}

impl QueueReceiver {
    /// The writer wrote `len` bytes of queued frames: their room is free again.
    pub(crate) fn written(&self, len: usize) {
        if len > 0 {
            self.bytes.used.fetch_sub(len, Ordering::SeqCst);
            if self.bytes.waiting.load(Ordering::SeqCst) > 0 {
                self.bytes.room.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_as_well_as_frames() {
        let (q, r) = link_queue(4, 100);
        assert!(q.try_send(vec![0; 60]).is_ok());
        assert!(matches!(q.try_send(vec![0; 60]), Err(QueueError::Full(_))), "over the bytes");
        assert!(q.try_send(vec![0; 40]).is_ok());
        r.written(60);
        assert!(q.try_send(vec![0; 10]).is_ok());
        assert!(q.try_send(vec![0; 10]).is_ok());
        assert!(matches!(q.try_send(vec![0; 1]), Err(QueueError::Full(_))), "over the frames");
        let (big, _r) = link_queue(4, 100);
        assert!(big.try_send(vec![0; 500]).is_ok(), "one large frame fits an empty queue");
    }

    #[test]
    fn a_waiting_sender_fails_when_the_link_goes() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let (q, r) = link_queue(8, 100);
            q.try_send(vec![0; 90]).expect("fits");
            let waiting = tokio::spawn({
                let q = q.clone();
                async move { q.send(vec![0; 50]).await }
            });
            tokio::task::yield_now().await;
            drop(r);
            assert!(matches!(waiting.await.expect("task"), Err(QueueError::Closed)));
        });
    }

    #[test]
    fn a_waiting_sender_goes_once_the_writer_frees_room() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let (q, mut r) = link_queue(8, 100);
            q.try_send(vec![0; 90]).expect("fits");
            let waiting = tokio::spawn({
                let q = q.clone();
                async move { q.send(vec![0; 50]).await }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished(), "no room yet");
            let f = r.rx.recv().await.expect("frame");
            r.written(f.len());
            waiting.await.expect("task").expect("queued");
            assert_eq!(r.rx.recv().await.map(|f| f.len()), Some(50));
        });
    }
}
