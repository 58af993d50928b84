//! File transfers: `upload_file`, `upload_directory` and `download_file`.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::Instant;

use kiln_proto::{ArgError, Args, Op, Value};

use super::{Ctx, elapsed, header, rc};

/// The largest block sent in one message, whatever the master asks: it keeps frames well under
/// the master's frame limit.
const MAX_BLOCKSIZE: usize = 4 << 20;

pub enum Transfer {
    UploadFile {
        path: String,
        maxsize: Option<u64>,
        blocksize: usize,
        keepstamp: bool,
    },
    UploadDirectory {
        path: String,
        maxsize: Option<u64>,
        blocksize: usize,
        compress: Option<String>,
    },
    DownloadFile {
        path: String,
        maxsize: Option<u64>,
        blocksize: usize,
        mode: Option<u32>,
    },
}

impl Transfer {
    pub fn parse(name: &str, args: &Args) -> Result<Transfer, ArgError> {
        let maxsize = args.opt_i64("maxsize")?.and_then(|m| u64::try_from(m).ok());
        let blocksize = |default: usize| -> Result<usize, ArgError> {
            Ok(args
                .opt_i64("blocksize")?
                .and_then(|b| usize::try_from(b).ok())
                .filter(|b| *b > 0)
                .unwrap_or(default)
                .min(MAX_BLOCKSIZE))
        };
        Ok(match name {
            "upload_file" | "uploadFile" => Transfer::UploadFile {
                path: args.str("path")?,
                maxsize,
                blocksize: blocksize(262_144)?,
                keepstamp: args.bool_or("keepstamp", false)?,
            },
            "upload_directory" | "uploadDirectory" => Transfer::UploadDirectory {
                path: args.str("path")?,
                maxsize,
                blocksize: blocksize(16_384)?,
                compress: args.opt_str("compress")?,
            },
            _ => Transfer::DownloadFile {
                path: args.str("path")?,
                maxsize,
                blocksize: blocksize(16_384)?,
                mode: args.opt_i64("mode")?.and_then(|m| u32::try_from(m).ok()),
            },
        })
    }
}

pub async fn run(t: Transfer, ctx: &Ctx) -> Result<(), String> {
    let started = Instant::now();
    let mut updates = Vec::new();
    let code = match t {
        Transfer::UploadFile {
            path,
            maxsize,
            blocksize,
            keepstamp,
        } => {
            upload_file(
                ctx,
                ctx.path(&path),
                maxsize,
                blocksize,
                keepstamp,
                &mut updates,
            )
            .await?
        }
        Transfer::UploadDirectory {
            path,
            maxsize,
            blocksize,
            compress,
        } => {
            upload_directory(
                ctx,
                ctx.path(&path),
                maxsize,
                blocksize,
                compress,
                &mut updates,
            )
            .await?
        }
        Transfer::DownloadFile {
            path,
            maxsize,
            blocksize,
            mode,
        } => download_file(ctx, ctx.path(&path), maxsize, blocksize, mode, &mut updates).await?,
    };
    updates.push(rc(code));
    updates.push(elapsed(started.elapsed().as_secs_f64()));
    ctx.update(updates).await
}

async fn send_blocks(
    ctx: &Ctx,
    file: &mut std::fs::File,
    maxsize: Option<u64>,
    blocksize: usize,
    directory: bool,
) -> Result<bool, String> {
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; blocksize];
    loop {
        let want = match maxsize {
            Some(max) => (max.saturating_sub(sent)).min(blocksize as u64) as usize,
            None => blocksize,
        };
        if want == 0 {
            // Anything left past the limit means the file was too big.
            let mut probe = [0u8; 1];
            let more = file.read(&mut probe).map_err(|e| e.to_string())? > 0;
            return Ok(!more);
        }
        let n = file.read(&mut buf[..want]).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(true);
        }
        sent += n as u64;
        let data = buf[..n].to_vec();
        let command_id = ctx.command_id.clone();
        let op = if directory {
            Op::UploadDirectoryWrite { command_id, data }
        } else {
            Op::UploadFileWrite { command_id, data }
        };
        ctx.request(op).await?;
    }
}

async fn upload_file(
    ctx: &Ctx,
    path: PathBuf,
    maxsize: Option<u64>,
    blocksize: usize,
    keepstamp: bool,
    updates: &mut Vec<(String, Value)>,
) -> Result<i64, String> {
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            updates.push(header(&format!(
                "Cannot open file '{}' for upload: {e}\n",
                path.display()
            )));
            ctx.request(Op::UploadFileClose {
                command_id: ctx.command_id.clone(),
            })
            .await?;
            return Ok(1);
        }
    };
    let complete = send_blocks(ctx, &mut file, maxsize, blocksize, false).await?;
    ctx.request(Op::UploadFileClose {
        command_id: ctx.command_id.clone(),
    })
    .await?;
    if keepstamp && let Ok(meta) = file.metadata() {
        use std::os::unix::fs::MetadataExt;
        let atime = meta.atime() as f64 + meta.atime_nsec() as f64 / 1e9;
        let mtime = meta.mtime() as f64 + meta.mtime_nsec() as f64 / 1e9;
        ctx.request(Op::UploadFileUtime {
            command_id: ctx.command_id.clone(),
            access_time: atime,
            modified_time: mtime,
        })
        .await?;
    }
    updates.push(header(&format!("sending {}\n", path.display())));
    if !complete {
        updates.push(header(&format!(
            "Maximum filesize reached, truncating file '{}'\n",
            path.display()
        )));
        return Ok(1);
    }
    Ok(0)
}

async fn upload_directory(
    ctx: &Ctx,
    path: PathBuf,
    maxsize: Option<u64>,
    blocksize: usize,
    compress: Option<String>,
    updates: &mut Vec<(String, Value)>,
) -> Result<i64, String> {
    if !path.is_dir() {
        updates.push(header(&format!(
            "Cannot read directory '{}' for upload\n",
            path.display()
        )));
        return Ok(1);
    }
    let compress = compress.filter(|c| !c.is_empty());
    if let Some(c) = compress.as_deref().filter(|c| *c != "gz") {
        updates.push(header(&format!(
            "unsupported compression {c:?}; this worker supports gz\n"
        )));
        return Ok(1);
    }
    let dir = path.clone();
    let gz = compress.is_some();
    // The archive is built into a temporary file so that memory stays bounded whatever the size.
    let archive = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut tmp = tempfile::tempfile()?;
        {
            let writer: Box<dyn Write> = if gz {
                Box::new(flate2::write::GzEncoder::new(
                    &mut tmp,
                    flate2::Compression::default(),
                ))
            } else {
                Box::new(&mut tmp)
            };
            let mut builder = tar::Builder::new(writer);
            builder.follow_symlinks(false);
            builder.append_dir_all(".", &dir)?;
            builder.into_inner()?.flush()?;
        }
        tmp.rewind()?;
        Ok(tmp)
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut archive = match archive {
        Ok(f) => f,
        Err(e) => {
            updates.push(header(&format!("archiving '{}': {e}\n", path.display())));
            return Ok(1);
        }
    };
    let complete = send_blocks(ctx, &mut archive, maxsize, blocksize, true).await?;
    if !complete {
        updates.push(header(&format!(
            "Maximum filesize reached, truncating '{}'\n",
            path.display()
        )));
        return Ok(1);
    }
    ctx.request(Op::UploadDirectoryUnpack {
        command_id: ctx.command_id.clone(),
    })
    .await?;
    updates.push(header(&format!("sending {}\n", path.display())));
    Ok(0)
}

async fn download_file(
    ctx: &Ctx,
    path: PathBuf,
    maxsize: Option<u64>,
    blocksize: usize,
    mode: Option<u32>,
    updates: &mut Vec<(String, Value)>,
) -> Result<i64, String> {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            updates.push(header(&format!(
                "Cannot open file '{}' for download: {e}\n",
                path.display()
            )));
            ctx.request(Op::ReadFileClose {
                command_id: ctx.command_id.clone(),
            })
            .await?;
            return Ok(1);
        }
    };
    let mut received: u64 = 0;
    let mut code = 0;
    loop {
        let length = match maxsize {
            Some(max) if received >= max => {
                updates.push(header(&format!(
                    "Maximum filesize reached, truncating file '{}'\n",
                    path.display()
                )));
                code = 1;
                break;
            }
            Some(max) => (max - received).min(blocksize as u64),
            None => blocksize as u64,
        };
        let data = ctx
            .request(Op::ReadFile {
                command_id: ctx.command_id.clone(),
                length,
            })
            .await?;
        let bytes: &[u8] = match &data {
            Value::Binary(b) => b,
            Value::String(s) => s.as_bytes(),
            _ => &[],
        };
        if bytes.is_empty() {
            break;
        }
        received += bytes.len() as u64;
        if let Err(e) = file.write_all(bytes) {
            updates.push(header(&format!("writing '{}': {e}\n", path.display())));
            code = 1;
            break;
        }
    }
    ctx.request(Op::ReadFileClose {
        command_id: ctx.command_id.clone(),
    })
    .await?;
    drop(file);
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    }
    Ok(code)
}
