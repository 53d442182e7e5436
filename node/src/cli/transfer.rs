//! Moving bytes between files and the daemon: uploads (encrypted here when asked) and downloads
//! (decrypted here), with progress bars, written atomically.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_node::atomic_file::AtomicFile;
use cairn_node::client;
use cairn_node::encrypt::{Capability, Decryptor, Encryptor};
use cairn_node::progress;
use cairn_node::unixfs::CHUNK_SIZE;
use cairn_proto::admin;
use tokio::io::AsyncWriteExt;

/// Writes `path` whole or not at all (see `cairn_node::atomic_file`): a failure leaves no
/// partial file. Returns the bytes written.
pub(crate) async fn write_atomically(
    path: &Path,
    fill: impl AsyncFnOnce(&mut tokio::io::BufWriter<tokio::fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let target = AtomicFile::create(path, 0o644)
        .with_context(|| format!("cannot create a file beside {}", path.display()))?;
    let file = tokio::fs::File::from_std(target.file().try_clone()?);
    let mut out = tokio::io::BufWriter::new(file);
    fill(&mut out).await?;
    out.flush().await?;
    let written = out.get_ref().metadata().await?.len();
    tokio::task::spawn_blocking(move || target.commit())
        .await?
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(written)
}

/// Sends a file's bytes as upload messages, the options riding on the first one.
struct Upload {
    tx: tokio::sync::mpsc::Sender<admin::AddFileRequest>,
    options: Option<admin::AddOptions>,
}

impl Upload {
    /// False when the call has ended (the daemon answered or the connection dropped).
    fn send(&mut self, data: Vec<u8>) -> bool {
        if data.is_empty() && self.options.is_none() {
            return true;
        }
        let msg = admin::AddFileRequest {
            options: self.options.take(),
            data: data.into(),
        };
        self.tx.blocking_send(msg).is_ok()
    }
}

/// Reads `path` (encrypting it when asked) into `upload`; returns the key when it encrypted.
fn read_for_upload(
    path: &Path,
    mut upload: Upload,
    encrypt: bool,
) -> anyhow::Result<Option<[u8; 32]>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata()?.len();
    let bar = progress::bar(&path.display().to_string(), Some(size), false);
    let mut encryptor = match encrypt {
        true => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (encryptor, header) = Encryptor::new(&name, size)?;
            if !upload.send(header) {
                return Ok(None);
            }
            Some(encryptor)
        }
        false => None,
    };
    loop {
        // Each message owns a fresh buffer of one whole chunk (short only at the end), so the
        // bytes are not copied again here and the daemon turns each message into a leaf as it is.
        let mut buf = Vec::with_capacity(CHUNK_SIZE);
        let n = (&mut file)
            .take(CHUNK_SIZE as u64)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        let data = match encryptor.as_mut() {
            Some(e) => e.push(&buf)?,
            None => buf,
        };
        if !upload.send(data) {
            return Ok(None);
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let key = match encryptor {
        Some(e) => {
            let key = e.key();
            upload.send(e.finish()?);
            Some(key)
        }
        None => None,
    };
    // An empty, unencrypted file still sends its options.
    upload.send(Vec::new());
    Ok(key)
}

/// Adds one file; with `encrypt`, the bytes are encrypted here and the capability returned.
pub(crate) async fn add_file(
    client: &mut client::Client,
    path: &Path,
    options: admin::AddOptions,
    encrypt: bool,
) -> anyhow::Result<(admin::AddFileResponse, Option<Capability>)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<admin::AddFileRequest>(4);
    let upload = Upload {
        tx,
        options: Some(options),
    };
    let source = path.to_owned();
    let mut reader = tokio::task::spawn_blocking(move || read_for_upload(&source, upload, encrypt));
    let rpc = client.add_file(tokio_stream::wrappers::ReceiverStream::new(rx));
    tokio::pin!(rpc);
    let mut key = None;
    let mut read_all = false;
    let answer = loop {
        tokio::select! {
            answer = &mut rpc => break answer,
            read = &mut reader, if !read_all => {
                // A read error must not look like the end of the file: returning drops the call,
                // which resets the stream, and the daemon pins nothing.
                key = read.context("file reader failed")??;
                read_all = true;
            }
        }
    };
    let added = match answer {
        Ok(added) => added.into_inner(),
        Err(status) => {
            reader.abort();
            return Err(status.into());
        }
    };
    if !read_all {
        // The daemon answered as the last message left: the reader is finishing.
        key = reader.await.context("file reader failed")??;
    }
    let capability = match key {
        Some(key) => Some(Capability::new(
            added.cid.parse().context("the daemon sent a bad CID")?,
            key,
        )),
        None => None,
    };
    Ok((added, capability))
}

/// Writes a file's bytes (decrypted, when given a capability) to `output` or stdout.
pub(crate) async fn cat(
    client: &mut client::Client,
    target: String,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let capability = target.parse::<Capability>().ok();
    let cid = match &capability {
        Some(cap) => cap.root.to_string(),
        None => target,
    };
    let cid_label = cid.clone();
    let mut stream = client.cat(admin::CatRequest { cid }).await?.into_inner();
    let mut decryptor = capability.as_ref().map(Decryptor::new);
    let bar = progress::bar(&cid_label, None, output.is_none());
    // Ciphertext is authenticated segment by segment: only checked plaintext is written, and a
    // bad or short ciphertext ends in an error.
    let mut copy =
        async |out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send)| -> anyhow::Result<()> {
            while let Some(piece) = stream.message().await? {
                match decryptor.as_mut() {
                    Some(d) => out.write_all(&d.push(&piece.data)?).await?,
                    None => out.write_all(&piece.data).await?,
                }
                bar.inc(piece.data.len() as u64);
            }
            if let Some(d) = decryptor.as_mut() {
                out.write_all(&d.finish()?).await?;
            }
            Ok(())
        };
    match output {
        Some(path) => {
            write_atomically(&path, async |out| copy(out).await).await?;
            bar.finish_and_clear();
        }
        None => {
            let mut out = tokio::io::stdout();
            copy(&mut out).await?;
            out.flush().await?;
        }
    }
    Ok(())
}
