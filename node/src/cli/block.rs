//! Single blocks: `block put`, `block get`, `block stat`, `block rm`.

use anyhow::Context;
use cairn_proto::admin;
use tokio::io::AsyncWriteExt;

use super::args::BlockAction;
use super::output::{self, emit};

pub(crate) async fn run(json: bool, action: BlockAction) -> anyhow::Result<()> {
    match action {
        BlockAction::Put { file, codec, api } => {
            let data = tokio::fs::read(&file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut client = api.connect().await?;
            let put = client
                .block_put(admin::BlockPutRequest {
                    data: data.into(),
                    codec,
                })
                .await?
                .into_inner();
            emit(
                json,
                &output::BlockPut {
                    cid: put.cid,
                    size: put.size,
                },
            )?;
        }
        BlockAction::Get { cid, api } => {
            // The block's bytes are the output, with or without --json.
            let mut client = api.connect().await?;
            let block = client
                .block_get(admin::BlockGetRequest { cid })
                .await?
                .into_inner();
            let mut out = tokio::io::stdout();
            out.write_all(&block.data).await?;
            out.flush().await?;
        }
        BlockAction::Stat { cid, api } => {
            let mut client = api.connect().await?;
            let stat = client
                .block_stat(admin::BlockStatRequest { cid })
                .await?
                .into_inner();
            emit(
                json,
                &output::BlockStat {
                    cid: stat.cid,
                    size: stat.size,
                    last_verified: stat.last_verified,
                },
            )?;
        }
        BlockAction::Rm { cid, api } => {
            let mut client = api.connect().await?;
            client
                .block_rm(admin::BlockRmRequest { cid: cid.clone() })
                .await?;
            emit(json, &output::BlockRemoved { cid, removed: true })?;
        }
    }
    Ok(())
}
