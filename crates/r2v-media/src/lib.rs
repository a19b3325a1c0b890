//! Media I/O for r2v, knowing nothing about requests or queues.
//!
//! - [`fetch`]: the SSRF-guarded HTTP fetcher with a streaming size cap.
//! - [`data_uri`]: `data:` URI decoding with a size cap.
//! - [`ffmpeg`]: every ffmpeg/ffprobe subprocess: timeout, rlimits, own process group.
//! - [`probe`]: what ffprobe reads from a reference video or an output file.
//! - [`image_check`]: image sniffing, limits, decoding and the alpha scan.
//! - [`video`]: decoding reference-video frames and encoding the output mp4.
//! - [`reference`]: one call that turns a reference source into checked, decoded media,
//!   mapping each failure to SPEC §2's typed 422 detail.
//!
//! Untrusted video bytes are only ever parsed by ffmpeg/ffprobe in a child process;
//! this crate links no demuxer. Start reading at [`reference::ReferenceLoader`].
#![warn(missing_docs)]

pub mod data_uri;
pub mod error;
pub mod fetch;
pub mod ffmpeg;
pub mod image_check;
pub mod probe;
pub mod reference;
pub mod video;

pub use error::MediaError;
