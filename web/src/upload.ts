// Chunked upload (BeginUpload -> UploadChunk... -> FinishUpload): gRPC-Web cannot stream a request.
import type { Episode } from "./gen/faceflow/v1/storage_pb";
import { Code, ConnectError } from "@connectrpc/connect";
import { getApi } from "./api";

const CHUNK_BYTES = 1024 * 1024;
const ATTEMPTS = 3;

export interface UploadTarget {
  epId: string;
  showId: string;
  replaceVideo: boolean;
}

/** Sends the file in order; a failed chunk is retried at the same offset (the server takes it once). */
export async function uploadEpisode(file: File, target: UploadTarget, onProgress: (sent: number) => void): Promise<Episode> {
  const { orchestrator } = getApi();
  const header = { epId: target.epId, filename: file.name, showId: target.showId, replaceVideo: target.replaceVideo };
  const session = await orchestrator.beginUpload({ header, sizeBytes: BigInt(file.size) });
  try {
    let offset = 0;
    while (offset < file.size) {
      const data = new Uint8Array(await file.slice(offset, offset + CHUNK_BYTES).arrayBuffer());
      const status = await withRetry(() => orchestrator.uploadChunk({ sessionId: session.sessionId, offset: BigInt(offset), data }));
      offset = Number(status.receivedBytes);
      onProgress(offset);
    }
    return await orchestrator.finishUpload({ sessionId: session.sessionId });
  } catch (error) {
    await orchestrator.abortUpload({ sessionId: session.sessionId }).catch(() => undefined);
    throw error;
  }
}

async function withRetry<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const transient = error instanceof ConnectError && [Code.Unavailable, Code.DeadlineExceeded].includes(error.code);
      if (!transient || attempt >= ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
    }
  }
}
